"""Row formats and their conversion to one canonical shape.

Every chat-like format becomes {"messages": [...], "tools": [...] (optional)}; raw text becomes {"text": str}.
A message is {"role": "system"|"user"|"assistant"|"tool", "content": str} plus, where the data has them,
"tool_calls" (OpenAI shape, arguments as a dict), "tool_call_id", "name" and "weight" (0 = not trained).
The trainer renders messages with the tokenizer's chat template (engine/train/masking.py).

    alpaca             instruction, input, output; optional system, history ([[question, answer], ...])
    sharegpt           conversations: [{from: system|human|gpt|function_call|observation, value}];
                       optional top-level system and tools (a list or a JSON string)
    messages           messages: [{role: system|user|assistant|tool, content, tool_calls, weight}]; optional tools
    prompt_completion  prompt, completion (text, or lists of messages as in trl's conversational form)
    text               text  (domain adaptation; packed into full-length blocks)

Content may be a list of parts ([{"type": "text", "text": ...}]): text parts are joined; a row with images,
audio or other non-text parts is refused (multimodal training is not supported).
Preference data (chosen/rejected) and KTO data (completion + label) are recognised and refused for SFT.
"""
from __future__ import annotations

import json
import re

from ..errors import TunetopError

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")
REFUSED = ("preference", "kto")

# Columns that identify a format, in the order they are tried (refused formats first: preference rows also
# carry a prompt, KTO rows a prompt and a completion).
SIGNATURES = (
    ("preference", {"chosen", "rejected"}),
    ("kto", {"completion", "label"}),
    ("sharegpt", {"conversations"}),
    ("messages", {"messages"}),
    ("alpaca", {"instruction", "output"}),
    ("prompt_completion", {"prompt", "completion"}),
    ("text", {"text"}),
)
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                   "model": "assistant", "function_call": "assistant", "observation": "tool", "tool": "tool",
                   "function_response": "tool", "ipython": "tool"}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool",
          "function": "tool", "ipython": "tool"}
_NON_TEXT_PARTS = {"image", "image_url", "input_image", "audio", "input_audio", "video", "video_url", "file"}
PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.\-]*\s*\}\}")


class BadRow(TunetopError):
    """One row that cannot be used; the message says why (the caller adds the row label)."""


def row_format(row: dict) -> str | None:
    """The first format whose identifying columns the row has (None: none fits)."""
    keys = row.keys()
    if isinstance(row.get("label"), bool) and keys & {"completion", "messages", "conversations"}:
        return "kto"             # KTO: a completion (or conversation) labelled desirable or not
    for name, columns in SIGNATURES:
        if columns <= keys:
            if name == "kto" and not isinstance(row.get("label"), bool):
                continue              # a "label" column that is not true/false is not KTO
            return name
    return None


def row_formats(row: dict) -> set[str]:
    fmt = row_format(row)
    return {fmt} if fmt else set()


def detect_format(rows: list[dict]) -> str | None:
    """The format most of the first rows have; None when no format fits."""
    counts: dict[str, int] = {}
    for r in rows[:200]:
        if isinstance(r, dict) and (fmt := row_format(r)):
            counts[fmt] = counts.get(fmt, 0) + 1
    return max(counts, key=counts.get) if counts else None


def expected_columns(fmt: str) -> str:
    return {"alpaca": "instruction, output (and optionally input, system, history)",
            "sharegpt": "conversations (a list of {from, value})",
            "messages": "messages (a list of {role, content})",
            "prompt_completion": "prompt, completion",
            "text": "text"}[fmt]


def map_columns(row: dict, columns: dict[str, str]) -> dict:
    """Rename the dataset's columns to a format's (data.columns = {format_name: dataset_name})."""
    if not columns:
        return row
    out = {k: v for k, v in row.items() if k not in columns.values()}
    for canonical, source in columns.items():
        if source in row:
            out[canonical] = row[source]
    return out


def normalise(row: dict, fmt: str, reasoning: str = "keep") -> dict:
    """Convert one row to the canonical shape, or raise BadRow saying what is wrong with it."""
    if fmt == "text":
        return {"text": _text(row, "text")}
    if fmt == "alpaca":
        messages = _alpaca(row)
    elif fmt == "prompt_completion":
        messages = _prompt_completion(row)
    elif fmt == "sharegpt":
        messages = _sharegpt(row)
    elif fmt == "messages":
        messages = _openai(row)
    else:
        raise ValueError(f"unknown format {fmt}")
    if reasoning == "drop":
        for m in messages:
            if m["role"] == "assistant":
                m["content"] = strip_reasoning(m["content"])
                m.pop("reasoning_content", None)
    out = {"messages": _check_conversation(messages)}
    tools = _tools(row)
    if tools:
        out["tools"] = tools
    return out


def strip_reasoning(text: str) -> str:
    """The reply without a leading <think>...</think> block."""
    if "</think>" in text:
        return text.split("</think>", 1)[1].lstrip("\n")
    return text


# ---------------------------------------------------------------------------------------------- formats

def _alpaca(row: dict) -> list[dict]:
    instruction, output = _text(row, "instruction"), _text(row, "output")
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise BadRow('"input" must be text')
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise BadRow('"history" must be a list of [question, answer] pairs')
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise BadRow(f"history[{i}] must be a [question, answer] pair of texts")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return messages


def _prompt_completion(row: dict) -> list[dict]:
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):
        # trl's conversational prompt-completion: both are lists of messages.
        prompt = prompt if isinstance(prompt, list) else [{"role": "user", "content": _text(row, "prompt")}]
        completion = completion if isinstance(completion, list) else \
            [{"role": "assistant", "content": _text(row, "completion")}]
        return _openai({"messages": list(prompt) + list(completion)})
    return [{"role": "user", "content": _text(row, "prompt")},
            {"role": "assistant", "content": _text(row, "completion")}]


def _sharegpt(row: dict) -> list[dict]:
    turns = _list(row, "conversations")
    messages: list[dict] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    calls = 0
    for i, turn in enumerate(turns):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise BadRow(f'{where} needs "from" and "value"')
        speaker = str(turn["from"]).lower()
        role = _SHAREGPT_ROLES.get(speaker)
        if role is None:
            raise BadRow(f'{where} has an unknown speaker "{turn["from"]}" '
                         "(expected system, human, gpt, function_call or observation)")
        if speaker == "function_call":
            new_calls = _parse_calls(turn["value"], where, calls)
            calls += len(new_calls)
            if messages and messages[-1]["role"] == "assistant" and not messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"] = new_calls        # "gpt" text then "function_call": one turn
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": new_calls})
            continue
        message = {"role": role, "content": _content(turn["value"], f"{where}.value")}
        if role == "tool":
            _link_tool_result(message, messages)
        if "weight" in turn:
            message["weight"] = _weight(turn["weight"], where)
        messages.append(message)
    return messages


def _openai(row: dict) -> list[dict]:
    turns = _list(row, "messages")
    messages: list[dict] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip() and not any(
            isinstance(t, dict) and t.get("role") == "system" for t in turns):
        messages.append({"role": "system", "content": system})
    calls = 0
    for i, turn in enumerate(turns):
        where = f"messages[{i}]"
        if isinstance(turn, dict) and "from" in turn and "value" in turn and "role" not in turn:
            turn = {"role": _SHAREGPT_ROLES.get(str(turn["from"]).lower(), turn["from"]), "content": turn["value"]}
        if not isinstance(turn, dict) or "role" not in turn:
            raise BadRow(f'{where} needs "role" and "content"')
        role = _ROLES.get(str(turn["role"]).lower())
        if role is None:
            raise BadRow(f'{where} has an unknown role "{turn["role"]}" (expected system, user, assistant or tool)')
        message: dict = {"role": role}
        raw_calls = turn.get("tool_calls") or ([turn["function_call"]] if turn.get("function_call") else None)
        if "content" not in turn and not raw_calls:
            raise BadRow(f'{where} needs "role" and "content"')
        content = turn.get("content")
        message["content"] = "" if content is None and raw_calls else _content(content, f"{where}.content")
        if raw_calls:
            if role != "assistant":
                raise BadRow(f"{where}: only assistant turns can have tool_calls")
            message["tool_calls"] = _parse_calls(raw_calls, f"{where}.tool_calls", calls)
            calls += len(message["tool_calls"])
        if role == "assistant" and isinstance(turn.get("reasoning_content"), str) and turn["reasoning_content"]:
            message["reasoning_content"] = turn["reasoning_content"]
        if role == "tool":
            if turn.get("tool_call_id"):
                message["tool_call_id"] = str(turn["tool_call_id"])
            else:
                _link_tool_result(message, messages)
            if turn.get("name"):
                message["name"] = str(turn["name"])
        if "weight" in turn:
            message["weight"] = _weight(turn["weight"], where)
        messages.append(message)
    return messages


# ---------------------------------------------------------------------------------------------- pieces

def _parse_calls(value, where: str, start: int) -> list[dict]:
    """Tool calls in OpenAI shape with arguments as a dict. Accepts a JSON string (Glaive/ShareGPT
    function_call turns), one call object, or a list; fills in 9-character ids where none are given
    (Mistral's templates require them)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRow(f'{where} is not a JSON tool call (expected {{"name": ..., "arguments": {{...}}}})') \
                from None
    calls = value if isinstance(value, list) else [value]
    out = []
    for k, call in enumerate(calls):
        if not isinstance(call, dict):
            raise BadRow(f"{where}: a tool call must be an object with a name and arguments")
        fn = call.get("function") if isinstance(call.get("function"), dict) else call
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise BadRow(f"{where}: a tool call has no function name")
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise BadRow(f"{where}: the arguments of {name} are not valid JSON") from None
        if not isinstance(args, dict):
            raise BadRow(f"{where}: the arguments of {name} must be a JSON object")
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else f"call{start + k:05d}"
        out.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
    return out


def _link_tool_result(message: dict, earlier: list[dict]) -> None:
    """A tool result without an id answers the next unanswered call of the last assistant turn."""
    answered = {m.get("tool_call_id") for m in earlier if m["role"] == "tool"}
    for m in reversed(earlier):
        if m.get("tool_calls"):
            for call in m["tool_calls"]:
                if call["id"] not in answered:
                    message["tool_call_id"] = call["id"]
                    message.setdefault("name", call["function"]["name"])
                    return
            return


def _tools(row: dict) -> list[dict] | None:
    tools = row.get("tools")
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            raise BadRow('"tools" is not valid JSON (expected a list of function definitions)') from None
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRow('"tools" must be a list of function definitions')
    out = []
    for t in tools:
        if "function" in t and isinstance(t["function"], dict):
            out.append({"type": t.get("type", "function"), "function": t["function"]})
        elif isinstance(t.get("name"), str):
            out.append({"type": "function", "function": t})
        else:
            raise BadRow('each of "tools" needs a name (or {"type": "function", "function": {...}})')
    return out


def _weight(value, where: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    raise BadRow(f"{where}.weight must be 0 (not trained) or 1 (trained), got {value!r}")


def _content(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in _NON_TEXT_PARTS or (isinstance(part, dict) and _NON_TEXT_PARTS & part.keys()):
                raise BadRow(f"{where} has a {kind or 'non-text'} part: multimodal training is not supported "
                             "(only text is trained)")
            else:
                raise BadRow(f'{where} has a part that is not text (expected {{"type": "text", "text": ...}})')
        return "".join(texts)
    raise BadRow(f"{where} must be text (or a list of text parts)")


def _text(row: dict, key: str) -> str:
    if key not in row or row[key] is None:
        raise BadRow(f'missing "{key}"')
    value = row[key]
    if not isinstance(value, str):
        raise BadRow(f'"{key}" must be text, got {type(value).__name__}')
    if not value.strip():
        raise BadRow(f'"{key}" is empty')
    return value


def _list(row: dict, key: str) -> list:
    value = row.get(key)
    if value is None:
        raise BadRow(f'missing "{key}"')
    if not isinstance(value, list) or not value:
        raise BadRow(f'"{key}" must be a non-empty list')
    return value


def _check_conversation(messages: list[dict]) -> list[dict]:
    if not any(m["role"] == "assistant" and (m["content"].strip() or m.get("tool_calls"))
               and m.get("weight", 1) for m in messages):
        raise BadRow("has no assistant reply to learn from")
    first = next((m for m in messages if m["role"] != "system"), None)
    if first is None or first["role"] == "assistant":
        raise BadRow("starts with an assistant turn (expected system or user first)")
    return messages


def placeholders(row: dict) -> list[str]:
    """Template placeholders such as {{name}} left in a row's text (an unfilled prompt template)."""
    texts = [row["text"]] if "text" in row else [m["content"] for m in row.get("messages", [])]
    return [m for t in texts for m in PLACEHOLDER.findall(t)]
