"""Turn normalised rows into token ids plus a mask of the tokens the loss learns from.

Conversations are rendered with the tokenizer's own chat template. Which characters belong to assistant
replies is found by rendering growing prefixes of the conversation and diffing them, so this works with
any template (Llama 3's and Mistral's have no `{% generation %}` markers that trl's assistant_only_loss
needs). Tokenizers without a template get FALLBACK_CHAT_TEMPLATE (ChatML), and the run logs that.

Raw text (domain adaptation) is tokenized, joined with EOS between documents and cut into blocks of
exactly max_seq_len tokens: classic causal-LM packing, every token trained.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def ensure_chat_template(tokenizer) -> bool:
    """Give the tokenizer a template if it has none. Returns True when the fallback was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant reply (with its end marker)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        # Text up to where the reply starts (the template's own assistant header included) ...
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        # ... and up to where it ends (its end-of-turn marker included: the model must learn to stop).
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if full.startswith(upto) and upto.startswith(before):
            spans.append((len(before), len(upto)))
        else:
            # A template that rewrites earlier turns (e.g. strips reasoning) breaks the prefix property;
            # fall back to locating the reply's text in the full rendering.
            start = full.find(message["content"], spans[-1][1] if spans else 0)
            if start >= 0:
                spans.append((start, start + len(message["content"])))
    return full, spans


def tokenize_conversation(tokenizer, messages: list[dict], completion_only: bool) -> dict:
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if completion_only:
        mask = [int(any(s < end and e > start for start, end in spans)) for s, e in offsets]
    else:
        mask = [1] * len(ids)
    return {"input_ids": ids, "completion_mask": mask}


def tokenize_rows(tokenizer, rows: list[dict], max_seq_len: int, completion_only: bool) -> Tokenized:
    if rows and "text" in rows[0]:
        return pack_text(tokenizer, [r["text"] for r in rows], max_seq_len)
    out = Tokenized(rows=[])
    for row in rows:
        item = tokenize_conversation(tokenizer, row["messages"], completion_only)
        if len(item["input_ids"]) > max_seq_len:
            out.truncated += 1
            item = {k: v[:max_seq_len] for k, v in item.items()}
        if not any(item["completion_mask"]):
            out.dropped += 1
            continue
        out.tokens += len(item["input_ids"])
        out.rows.append(item)
    return out


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
