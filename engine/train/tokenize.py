"""Turn normalised rows into token ids plus a mask of the tokens the loss learns from.

Conversations are rendered with the tokenizer's own chat template and the trained character spans are
found exactly by engine/train/masking.py (sentinel rendering, verified alignment; see its docstring for what
is trained with every template). Rows the template rejects or that cannot be masked exactly are skipped
with the reason and counted, never guessed. Tokenizers without a template get FALLBACK_CHAT_TEMPLATE
(ChatML), and the run logs that.

Raw text (domain adaptation) is tokenized, joined with EOS between documents and cut into blocks of
exactly max_seq_len tokens: classic causal-LM packing, every token trained.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .masking import ChatRenderer, RowSkipped

# ChatML: widely understood, needs no special tokens beyond plain text markers.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Tokenized:
    rows: list[dict]          # {"input_ids": [...], "completion_mask": [...]}
    truncated: int = 0        # rows longer than max_seq_len (cut)
    dropped: int = 0          # rows with no trainable token left after truncation
    tokens: int = 0           # total tokens kept
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (row label, why) the template refused
    notes: Counter = field(default_factory=Counter)                 # per-template fallbacks, counted
    lengths: list[int] = field(default_factory=list)                # token length of each row before the cut


def ensure_chat_template(tokenizer) -> bool:
    """Give the tokenizer a template if it has none. Returns True when the fallback was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def assistant_spans(tokenizer, messages: list[dict], tools=None, renderer: ChatRenderer | None = None):
    """The rendered conversation and the exact character spans to train. Raises RowSkipped."""
    out = (renderer or ChatRenderer(tokenizer)).render(messages, tools)
    return out.text, out.spans


def mask_for(offsets, spans) -> list[int]:
    """1 for each token whose characters overlap a trained span (spans sorted, non-overlapping).
    Offsets are sorted, so each span's tokens are found by bisection (a few spans, many tokens)."""
    from bisect import bisect_left, bisect_right
    mask = [0] * len(offsets)
    if not spans or not offsets:
        return mask
    ends = [e for _, e in offsets]
    starts = [s for s, _ in offsets]
    for a, b in spans:
        lo = bisect_right(ends, a)          # first token ending after the span starts
        hi = bisect_left(starts, b)         # first token starting at or after the span's end
        for k in range(lo, hi):
            if ends[k] > starts[k]:         # zero-width tokens are never trained
                mask[k] = 1
    return mask


def tokenize_conversation(tokenizer, messages: list[dict], completion_only: bool, tools=None,
                          renderer: ChatRenderer | None = None) -> dict:
    text, spans = assistant_spans(tokenizer, messages, tools, renderer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = mask_for(offsets, spans) if completion_only else [1] * len(ids)
    return {"input_ids": ids, "completion_mask": mask}


def tokenize_rows(tokenizer, rows: list[dict], max_seq_len: int, completion_only: bool,
                  reasoning: str = "keep", renderer: ChatRenderer | None = None) -> Tokenized:
    if rows and "text" in rows[0]:
        return pack_text(tokenizer, [r["text"] for r in rows], max_seq_len)
    renderer = renderer or ChatRenderer(tokenizer, reasoning)
    out = Tokenized(rows=[])
    for n, row in enumerate(rows, start=1):
        try:
            item = tokenize_conversation(tokenizer, row["messages"], completion_only, row.get("tools"), renderer)
        except RowSkipped as exc:
            out.skipped.append((row.get("_label", f"row {n}"), str(exc)))
            continue
        out.lengths.append(len(item["input_ids"]))
        if len(item["input_ids"]) > max_seq_len:
            out.truncated += 1
            item = {k: v[:max_seq_len] for k, v in item.items()}
        if not any(item["completion_mask"]):
            out.dropped += 1
            continue
        out.tokens += len(item["input_ids"])
        out.rows.append(item)
    out.notes = renderer.notes
    return out


def unusable_problem(total_rows: int, data_bad: int, tok: Tokenized, max_bad_fraction: float) -> str | None:
    """Why the run must stop (rows bad in the data plus rows the template refused over the allowed share),
    or None."""
    bad = data_bad + len(tok.skipped)
    if not bad or bad <= max_bad_fraction * max(total_rows, 1):
        return None
    reasons = Counter(why for _, why in tok.skipped).most_common(3)
    shown = "; ".join(f"{n} x {why}" for why, n in reasons)
    first = "; ".join(f"{label}: {why}" for label, why in tok.skipped[:2])
    return (f"{bad} of {total_rows} rows ({bad / max(total_rows, 1):.0%}) cannot be used, more than "
            f"data.max_bad_fraction = {max_bad_fraction:g}" + (f": {shown} (first: {first})" if shown else ""))


def pack_text(tokenizer, texts: list[str], max_seq_len: int) -> Tokenized:
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            stream.append(eos)
    blocks = [stream[i:i + max_seq_len] for i in range(0, len(stream), max_seq_len)]
    # Keep a short final block only when it is all there is (a tiny corpus still trains).
    if len(blocks) > 1 and len(blocks[-1]) < max_seq_len:
        blocks.pop()
    rows = [{"input_ids": b, "completion_mask": [1] * len(b)} for b in blocks if len(b) > 1]
    return Tokenized(rows=rows, tokens=sum(len(b) for b in blocks))


def tokenize_data(tokenizer, report, profile, log):
    """Tokenize a DataReport's train and eval rows for the engine, log what happened to them (truncated,
    dropped, skipped by the template, fallbacks used) and refuse the run before any model is loaded when
    too much of the data is unusable. Returns (train Tokenized, eval Tokenized or None)."""
    from ..data import DataError
    t, d = profile.training, profile.data
    reasoning = getattr(d, "reasoning", "keep")
    renderer = ChatRenderer(tokenizer, reasoning) if report.format != "text" else None
    train_tok = tokenize_rows(tokenizer, report.train, t.max_seq_len, t.completion_only_loss, reasoning, renderer)
    eval_tok = (tokenize_rows(tokenizer, report.eval, t.max_seq_len, t.completion_only_loss, reasoning, renderer)
                if report.eval else None)
    for name, tok in (("train", train_tok), ("eval", eval_tok)):
        if tok is None:
            continue
        if tok.truncated or tok.dropped:
            log(f"{name}: {tok.truncated} rows longer than max_seq_len={t.max_seq_len} were truncated; "
                f"{tok.dropped} rows had nothing left to learn from and were dropped", "warning")
        if tok.skipped:
            shown = "; ".join(f"{label}: {why}" for label, why in tok.skipped[:3])
            log(f"{name}: {len(tok.skipped)} rows skipped by the chat template: {shown}", "warning")
    for note, n in (renderer.notes.items() if renderer else ()):
        log(f"chat template: {n} rows: {note}", "warning")
    skipped = len(train_tok.skipped) + (len(eval_tok.skipped) if eval_tok else 0)
    total = report.total_rows
    merged = Tokenized(rows=[], skipped=train_tok.skipped + (eval_tok.skipped if eval_tok else []))
    problem = unusable_problem(total, report.bad_count, merged, getattr(d, "max_bad_fraction", 0.10))
    if problem and skipped:
        raise DataError(problem, hint="fix the rows, use a model whose chat template accepts them, or raise "
                                      "data.max_bad_fraction to train on the usable rows")
    if not train_tok.rows:
        raise DataError(f"{report.sources[0]}: no row has a trainable token after tokenizing",
                        hint="raise training.max_seq_len or check the dataset's answers are not empty")
    return train_tok, eval_tok
