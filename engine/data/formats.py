"""Row formats and their conversion to one canonical shape.

Every chat-like format becomes {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]};
raw text becomes {"text": str}. The trainer then renders messages with the tokenizer's chat template.

    alpaca             instruction, input (optional), output, system (optional)
    sharegpt           conversations: [{from: system|human|gpt, value}]
    messages           messages: [{role: system|user|assistant, content}]   (OpenAI style)
    prompt_completion  prompt, completion  (one user turn, one assistant turn)
    text               text  (domain adaptation; packed into full-length blocks)
"""
from __future__ import annotations

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")

# Columns that identify a format, in the order they are tried.
_SIGNATURES = (
    ("sharegpt", {"conversations"}),
    ("messages", {"messages"}),
    ("alpaca", {"instruction", "output"}),
    ("prompt_completion", {"prompt", "completion"}),
    ("text", {"text"}),
)
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}
_ROLES = {"system", "user", "assistant"}


def detect_format(rows: list[dict]) -> str | None:
    """The format whose columns most of the first rows have; None when no format fits."""
    sample = [r for r in rows[:50] if isinstance(r, dict)]
    best, best_count = None, 0
    for name, columns in _SIGNATURES:
        count = sum(columns <= r.keys() for r in sample)
        if count > best_count:
            best, best_count = name, count
    return best


def expected_columns(fmt: str) -> str:
    return {"alpaca": "instruction, output (and optionally input, system)",
            "sharegpt": "conversations (a list of {from, value})",
            "messages": "messages (a list of {role, content})",
            "prompt_completion": "prompt, completion",
            "text": "text"}[fmt]


class BadRow(ValueError):
    pass


def normalise(row: dict, fmt: str) -> dict:
    """Convert one row to the canonical shape, or raise BadRow saying what is wrong with it."""
    if fmt == "text":
        text = _text(row, "text")
        return {"text": text}
    if fmt == "alpaca":
        instruction, output = _text(row, "instruction"), _text(row, "output")
        extra = row.get("input") or ""
        if not isinstance(extra, str):
            raise BadRow('"input" must be text')
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        system = row.get("system")
        if isinstance(system, str) and system.strip():
            messages.insert(0, {"role": "system", "content": system})
        return {"messages": messages}
    if fmt == "prompt_completion":
        return {"messages": [{"role": "user", "content": _text(row, "prompt")},
                             {"role": "assistant", "content": _text(row, "completion")}]}
    if fmt == "sharegpt":
        turns = _list(row, "conversations")
        messages = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise BadRow(f"conversations[{i}] needs \"from\" and \"value\"")
            role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
            if role is None:
                raise BadRow(f'conversations[{i}] has an unknown speaker "{turn["from"]}" '
                             "(expected system, human or gpt)")
            messages.append({"role": role, "content": _turn_text(turn["value"], f"conversations[{i}].value")})
        return {"messages": _check_conversation(messages)}
    if fmt == "messages":
        turns = _list(row, "messages")
        messages = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
                raise BadRow(f"messages[{i}] needs \"role\" and \"content\"")
            if turn["role"] not in _ROLES:
                raise BadRow(f'messages[{i}] has an unknown role "{turn["role"]}" (expected system, user or assistant)')
            messages.append({"role": turn["role"], "content": _turn_text(turn["content"], f"messages[{i}].content")})
        return {"messages": _check_conversation(messages)}
    raise ValueError(f"unknown format {fmt}")


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


def _turn_text(value, where: str) -> str:
    if not isinstance(value, str):
        raise BadRow(f"{where} must be text")
    return value


def _check_conversation(messages: list[dict]) -> list[dict]:
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise BadRow("has no assistant reply to learn from")
    if messages[0]["role"] == "assistant":
        raise BadRow("starts with an assistant turn (expected system or user first)")
    return messages
