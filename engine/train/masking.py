"""Render a conversation with the tokenizer's own chat template and find, exactly, the characters to train.

What is trained: every assistant turn's reply (its reasoning, text and tool calls) plus the end-of-turn
marker the template writes after it, up to and including the first end-of-turn/EOS marker. Nothing of
system, user or tool turns; no generation-prompt artefacts (an assistant header the template appends after
the last turn, an empty `<think></think>` block it inserts, a turn's closing newline).

How (no reliance on prefix-diffing): the conversation is rendered twice, once as is and once with every
assistant reply, reasoning and tool-call name replaced by a unique sentinel. The sentinel rendering splits
into template text and data pieces; the real rendering must equal the same template text with each piece
put back (as written, or as the template trims it). When it does, every piece's position is known exactly;
when it does not, the row is skipped with the reason ("cannot be masked exactly"), never guessed.
A reply's span starts at its text; a turn that opens with reasoning or a tool call starts right after the
template's generation prompt (so `<think>` and `<tool_call>` are learned); it ends after the first end
marker that follows the turn's last piece. When the template writes no end marker after a reply, the span
ends with the reply and the row carries a note (the model will not learn to stop there).

Per-row fallbacks, each counted in `ChatRenderer.notes` and reported by validate/preview/the engine:
- templates that reject a system role (Gemma 1/2, Mistral v0.1/v0.2) or silently drop it (Phi-3-mini; Mistral
  v0.3/Nemo, which place it only in a final user turn, so never in training rows): the system prompt is merged
  into the first user turn ("SYSTEM\\n\\nUSER"), as those models' own documentation does;
- templates without tool support (no `tool_calls` in the template): tool calls are written into the reply
  as `<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>` (Hermes style), tool results become user
  turns wrapped in `<tool_response>`, and the tool list is prepended to the system prompt;
- templates whose tool-call rendering concatenates argument strings (DeepSeek): arguments are passed as JSON
  text when the dict form fails;
- any other template error skips that row with the template's own message.
Reasoning (data.reasoning): "keep" trains `<think>` blocks and reasoning_content as part of the reply (for
templates that use `reasoning_content`, a leading `<think>...</think>` in the reply is moved there, so the
template places it); "drop" removes them before rendering. Empty think blocks a template inserts are
template text and never trained.
"""
from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass

END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|END_OF_TURN_TOKEN|>",
               "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|endoftext|>", "<|return|>", "<|call|>", "</s>",
               "<|end_of_turn|>", "<|EOT|>", "<|eos|>")
_SENT = re.compile("\ue000([A-Z][0-9]+(?:_[0-9]+)?)\ue001")

NOTE_SYSTEM = "system prompt merged into the first user turn (the template has no system role)"
NOTE_SYSTEM_DROPPED = "system prompt merged into the first user turn (the template drops it from training rows)"
NOTE_TOOLS = "tool calls written as <tool_call> JSON text (the template has no tool support)"
NOTE_NO_END = "a reply the template ends without an end-of-turn marker (the model does not learn to stop there)"
NOTE_ARGS = "tool-call arguments passed as JSON text (the template concatenates them as strings)"
NOTE_THINK = "reasoning in a reply removed by the template itself (only the answer after </think> is trained)"


class RowSkipped(Exception):
    """This row cannot be rendered or masked exactly; str() says why."""


@dataclass
class Rendered:
    text: str
    spans: list[tuple[int, int]]      # trained character spans, in order, non-overlapping
    messages: list[dict]              # what was rendered (after fallbacks)


def _s(key: str) -> str:
    return f"\ue000{key}\ue001"


class ChatRenderer:
    def __init__(self, tokenizer, reasoning: str = "keep", name: str | None = None):
        self.tok = tokenizer
        template = tokenizer.chat_template
        if isinstance(template, dict):
            template = template.get("default") or next(iter(template.values()))
        self.source = template or ""
        self.name = name or getattr(tokenizer, "name_or_path", "") or "the chat template"
        self.reasoning = reasoning
        self.supports_tools = "tool_calls" in self.source
        self.uses_reasoning_content = "reasoning_content" in self.source
        eos = getattr(tokenizer, "eos_token", None)
        self.markers = tuple(dict.fromkeys([*END_MARKERS, *([eos] if isinstance(eos, str) and eos else [])]))
        self.notes: Counter = Counter()
        self.no_system = False
        self.string_args = False
        self.gen_prompt = self._generation_prompt()

    # ------------------------------------------------------------------------------------------ public
    def render(self, messages: list[dict], tools: list[dict] | None = None) -> Rendered:
        msgs = [dict(m) for m in messages]
        notes: list[str] = []
        if (tools or any(m.get("tool_calls") or m["role"] == "tool" for m in msgs)) and not self.supports_tools:
            msgs, tools = _tools_as_text(msgs, tools)
            notes.append(NOTE_TOOLS)
        for m in msgs:
            if m["role"] != "assistant":
                continue
            if self.reasoning == "drop":
                m.pop("reasoning_content", None)
                if "</think>" in m["content"]:
                    m["content"] = m["content"].split("</think>", 1)[1].lstrip("\n")
            elif self.uses_reasoning_content and "</think>" in m["content"] and "reasoning_content" not in m:
                head, tail = m["content"].split("</think>", 1)
                m["reasoning_content"] = head.split("<think>", 1)[-1].strip("\n")
                m["content"] = tail.lstrip("\n")
        if self.no_system and any(m["role"] == "system" for m in msgs):
            msgs = _merge_system(msgs)
            notes.append(NOTE_SYSTEM)
        try:
            real, msgs, used = self._render_with_fallbacks(msgs, tools)
        except RowSkipped:
            raise
        notes += used
        if not self.no_system and _system_lost(real, msgs):
            # The template drops the system prompt (Phi-3-mini; Mistral v0.3/Nemo keep it only when the
            # last message is a user turn, never in training data): put it in the first user turn instead.
            self.no_system = True
            msgs = _merge_system(msgs)
            real, msgs, more = self._render_with_fallbacks(msgs, tools)
            notes += [NOTE_SYSTEM_DROPPED] + more
        sentinel_msgs, values = _with_sentinels(msgs)
        try:
            sent = self._apply(sentinel_msgs, tools)
        except Exception as exc:  # noqa: BLE001 - the real rendering worked; the sentinel one must too
            raise RowSkipped(f"{self.name}: cannot be masked exactly (the template fails on placeholder "
                             f"replies: {_first_line(exc)})") from None
        self._row_notes = notes
        positions = self._align(real, sent, values)
        spans, no_end = self._spans(real, msgs, positions)
        if no_end:
            notes.append(NOTE_NO_END)
        for n in notes:
            self.notes[n] += 1
        return Rendered(real, spans, msgs)

    # ------------------------------------------------------------------------------------------ rendering
    def _apply(self, msgs, tools, add_generation_prompt=False) -> str:
        msgs = _string_args(msgs) if self.string_args else msgs
        return self.tok.apply_chat_template(msgs, tools=tools or None, tokenize=False,
                                            add_generation_prompt=add_generation_prompt)

    def _render_with_fallbacks(self, msgs, tools):
        used: list[str] = []
        for _ in range(3):
            try:
                return self._apply(msgs, tools), msgs, used
            except Exception as exc:  # noqa: BLE001 - jinja raises TemplateError, TypeError, ...
                text = _first_line(exc)
                if not self.no_system and any(m["role"] == "system" for m in msgs):
                    # "System role not supported", or a strict alternation check that counts the system turn
                    self.no_system = True
                    msgs = _merge_system(msgs)
                    used.append(NOTE_SYSTEM)
                    continue
                if not self.string_args and any(m.get("tool_calls") for m in msgs):
                    self.string_args = True
                    try:
                        out = self._apply(msgs, tools)
                        used.append(NOTE_ARGS)
                        return out, msgs, used
                    except Exception:  # noqa: BLE001
                        self.string_args = False
                raise RowSkipped(f"the chat template rejects this row: {text}") from None
        raise RowSkipped("the chat template rejects this row")

    def _generation_prompt(self) -> str:
        """What the template writes to open an assistant turn (after the user turn's end marker)."""
        user = _s("U0")
        try:
            text = self._apply([{"role": "user", "content": user}], None, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a template that cannot render a lone user turn
            return ""
        if user not in text:
            return ""
        tail = text.split(user, 1)[1]
        hit = self._first_marker(tail, 0, len(tail))
        return (tail[hit:] if hit is not None else tail).lstrip()

    # ------------------------------------------------------------------------------------------ alignment
    def _align(self, real: str, sent: str, values: dict[str, str]) -> dict[str, tuple[int, int]]:
        parts = _SENT.split(sent)          # [text, key, text, key, ..., text]
        keys = parts[1::2]
        if len(set(keys)) != len(keys):
            raise RowSkipped(f"{self.name}: cannot be masked exactly (the template writes a reply twice)")
        pos, out = 0, {}
        for j in range(0, len(parts) - 1, 2):
            seg, key, nxt = parts[j], parts[j + 1], parts[j + 2]
            if not real.startswith(seg, pos):
                raise RowSkipped(f"{self.name}: cannot be masked exactly (the template text around a reply "
                                 "depends on the reply itself)")
            pos += len(seg)
            last = j + 2 == len(parts) - 1
            for cand in _candidates(values[key]):
                after = pos + len(cand)
                if real.startswith(cand, pos) and (real[after:] == nxt if last else
                                                   (not nxt or real.startswith(nxt, after))):
                    if "</think>" in values[key] and "</think>" not in cand:
                        self._row_notes.append(NOTE_THINK)
                    out[key] = (pos, after)
                    pos = after
                    break
            else:
                raise RowSkipped(f"{self.name}: cannot be masked exactly (the template rewrites a reply in a "
                                 "way tunetop cannot map back to the text)")
        if real[pos:] != parts[-1]:
            raise RowSkipped(f"{self.name}: cannot be masked exactly (rendering differs after the last reply)")
        return out

    def _spans(self, real: str, msgs: list[dict], positions: dict[str, tuple[int, int]]):
        ordered = sorted(positions.items(), key=lambda kv: kv[1][0])
        starts = [p[0] for _, p in ordered]
        spans, no_end = [], False
        for i, m in enumerate(msgs):
            if m["role"] != "assistant" or m.get("weight", 1) == 0:
                continue
            mine = [(k, p) for k, p in ordered if _msg_index(k) == i]
            if not mine:
                continue
            first_key, (start, _) = mine[0]
            end = max(p[1] for _, p in mine)
            if first_key[0] != "C" and self.gen_prompt:
                # reasoning or a tool call opens the turn: train from the end of the generation prompt
                prev_end = max([p[1] for _, p in ordered if p[1] <= start] or [0])
                gap = real[prev_end:start]
                opener = self.gen_prompt
                at = gap.rfind(opener)
                if at < 0 and "<think>" in opener:
                    # DeepSeek-R1 opens generation with "<think>\n"; a turn without reasoning does not
                    opener = opener.split("<think>", 1)[0]
                    at = gap.rfind(opener) if opener else -1
                if at < 0:
                    raise RowSkipped(f"{self.name}: cannot be masked exactly (cannot tell where the "
                                     "assistant turn opens before its reasoning or tool call)")
                start = prev_end + at + len(opener)
            limit = next((s for s in starts if s >= end), len(real))
            hit = self._first_marker(real, end, limit)
            if hit is None:
                no_end = True
            else:
                end = hit
            spans.append((start, end))
        return spans, no_end

    def _first_marker(self, text: str, lo: int, hi: int) -> int | None:
        """The end of the earliest end-of-turn marker in text[lo:hi], or None."""
        best = None
        for marker in self.markers:
            at = text.find(marker, lo, hi)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, at + len(marker))
        return best[1] if best else None


# ---------------------------------------------------------------------------------------------- helpers

def _msg_index(key: str) -> int:
    return int(key[1:].split("_")[0])


def _candidates(value: str) -> list[str]:
    """How a template may write a value: as is, trimmed (Llama 3 `| trim`, `.strip()`), or without a
    leading reasoning block (DeepSeek-R1, Qwen3 for earlier turns)."""
    out = [value, value.strip(), value.lstrip(), value.rstrip(), value.strip("\n"), value.lstrip("\n")]
    if "</think>" in value:
        tail = value.split("</think>")[-1]
        out += [tail, tail.lstrip("\n"), tail.strip()]
    return sorted(dict.fromkeys(out), key=len, reverse=True)


def _with_sentinels(msgs: list[dict]) -> tuple[list[dict], dict[str, str]]:
    out, values = [], {}
    for i, m in enumerate(msgs):
        m = copy.deepcopy(m)
        if m["role"] == "assistant":
            if m.get("reasoning_content"):
                values[f"R{i}"] = m["reasoning_content"]
                m["reasoning_content"] = _s(f"R{i}")
            if m["content"]:
                values[f"C{i}"] = m["content"]
                m["content"] = _s(f"C{i}")
            for k, call in enumerate(m.get("tool_calls") or []):
                key = f"N{i}_{k}"
                values[key] = call["function"]["name"]
                call["function"]["name"] = _s(key)
        out.append(m)
    return out, values


def _system_lost(text: str, msgs: list[dict]) -> bool:
    return any(m["role"] == "system" and m["content"].strip() and m["content"].strip() not in text for m in msgs)


def _merge_system(msgs: list[dict]) -> list[dict]:
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system" and m["content"])
    rest = [dict(m) for m in msgs if m["role"] != "system"]
    if system:
        first = next((m for m in rest if m["role"] == "user"), None)
        if first is None:
            rest.insert(0, {"role": "user", "content": system})
        else:
            first["content"] = f"{system}\n\n{first['content']}"
    return rest


def _tools_as_text(msgs: list[dict], tools: list[dict] | None) -> tuple[list[dict], None]:
    out = []
    for m in msgs:
        m = dict(m)
        if m.get("tool_calls"):
            calls = "\n".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                                           "arguments": c["function"]["arguments"]},
                                                          ensure_ascii=False) + "\n</tool_call>"
                              for c in m.pop("tool_calls"))
            m["content"] = f"{m['content']}\n{calls}" if m["content"] else calls
        elif m["role"] == "tool":
            m = {"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
        m.pop("tool_call_id", None)
        m.pop("name", None)
        out.append(m)
    # Consecutive user turns (several tool results) are joined: strict templates need alternation.
    joined: list[dict] = []
    for m in out:
        if joined and m["role"] == "user" and joined[-1]["role"] == "user":
            joined[-1] = {**joined[-1], "content": joined[-1]["content"] + "\n" + m["content"]}
        else:
            joined.append(m)
    if tools:
        listing = "# Tools\n\nYou may call these functions:\n" + "\n".join(
            json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
        if joined and joined[0]["role"] == "system":
            joined[0] = {**joined[0], "content": f"{joined[0]['content']}\n\n{listing}"}
        else:
            joined.insert(0, {"role": "system", "content": listing})
    return joined, None


def _string_args(msgs: list[dict]) -> list[dict]:
    out = []
    for m in msgs:
        if m.get("tool_calls"):
            m = copy.deepcopy(m)
            for c in m["tool_calls"]:
                if not isinstance(c["function"]["arguments"], str):
                    c["function"]["arguments"] = json.dumps(c["function"]["arguments"], ensure_ascii=False)
        out.append(m)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
