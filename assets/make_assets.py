#!/usr/bin/env python
"""Deterministically (re)generate the tunetop test/demo assets.

Writes, next to this file:

* ``data/``        small templated datasets in every input format tunetop accepts
                   (alpaca json/jsonl, sharegpt, OpenAI messages, prompt/completion
                   csv + parquet, and a folder of plain ``.txt`` files for
                   continued pre-training);
* ``tiny-llama/``  a randomly initialised ~140k-parameter LlamaForCausalLM with its
                   own ByteLevel BPE tokenizer (vocab 512) trained on the texts above
                   and a ChatML chat template carrying ``{% generation %}`` markers.

Everything is seeded, so running the script twice produces byte-identical files:

    python assets/make_assets.py
"""

from __future__ import annotations

import os

# Must be set before `tokenizers` / `torch` are imported: single-threaded tokenizer
# training keeps the learned merges (and hence every file) reproducible.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

ASSETS = Path(__file__).resolve().parent
DATA_DIR = ASSETS / "data"
TEXT_DIR = DATA_DIR / "text"
MODEL_DIR = ASSETS / "tiny-llama"

SEED = 1234
N_ROWS = 400

# --------------------------------------------------------------------------------------
# Tokenizer / model constants
# --------------------------------------------------------------------------------------

VOCAB_SIZE = 512
# Order fixes the ids: <unk>=0, <s>=1, </s>=2, <pad>=3, <|im_start|>=4, <|im_end|>=5.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
UNK, BOS, EOS, PAD, IM_START, IM_END = SPECIAL_TOKENS
MAX_LEN = 512

# ChatML with {% generation %} markers around the assistant content *and* its
# <|im_end|>, so `return_assistant_tokens_mask=True` marks exactly the tokens the model
# must produce (including the end-of-turn token, which TRL checks for).
# ShareGPT role names ("human"/"gpt") are mapped to "user"/"assistant" so raw
# ShareGPT rows that only had from/value renamed still render (and mask) correctly.
CHAT_TEMPLATE = (
    "{%- set role_map = {'human': 'user', 'gpt': 'assistant'} -%}\n"
    "{%- for message in messages -%}\n"
    "{%- set role = role_map.get(message['role'], message['role']) -%}\n"
    "{%- if role == 'assistant' -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- generation -%}\n"
    "{{- message['content'] + '<|im_end|>' -}}\n"
    "{%- endgeneration -%}\n"
    "{{- '\\n' -}}\n"
    "{%- else -%}\n"
    "{{- '<|im_start|>' + role + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n"
)

# --------------------------------------------------------------------------------------
# Templated, learnable content
# --------------------------------------------------------------------------------------

CAPITALS = [
    ("France", "Paris"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
    ("Chile", "Santiago"),
    ("Cuba", "Havana"),
    ("Ireland", "Dublin"),
    ("Poland", "Warsaw"),
    ("Portugal", "Lisbon"),
]

COLOURS = [
    ("the sky", "blue"),
    ("the sea", "blue"),
    ("grass", "green"),
    ("a leaf", "green"),
    ("snow", "white"),
    ("milk", "white"),
    ("coal", "black"),
    ("the night", "black"),
    ("a banana", "yellow"),
    ("the sun", "yellow"),
    ("a tomato", "red"),
    ("blood", "red"),
    ("an orange", "orange"),
    ("a carrot", "orange"),
    ("a plum", "purple"),
    ("a cloud", "grey"),
]

OPPOSITES = [
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("up", "down"),
    ("old", "new"),
    ("day", "night"),
    ("open", "closed"),
    ("wet", "dry"),
    ("full", "empty"),
    ("light", "dark"),
    ("early", "late"),
    ("happy", "sad"),
]

WORDS = [
    "cat", "dog", "sun", "map", "cup", "pen", "box", "car", "hat", "bus",
    "red", "top", "star", "frog", "fish", "bird", "tree", "book", "lamp", "door",
    "milk", "rain", "moon", "ship",
]

# (big unit plural, big unit singular, small unit plural, factor)
UNITS = [
    ("metres", "metre", "centimetres", 100),
    ("kilometres", "kilometre", "metres", 1000),
    ("hours", "hour", "minutes", 60),
    ("minutes", "minute", "seconds", 60),
    ("kilograms", "kilogram", "grams", 1000),
    ("days", "day", "hours", 24),
    ("weeks", "week", "days", 7),
]

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a friendly tutor. Answer in one short sentence.",
    "You are a concise assistant.",
]

TASKS = ["add", "sub", "capital", "colour", "reverse", "unit", "opposite"]


def _unit_phrase(n: int, plural: str, singular: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def make_example(rng: random.Random, task: str | None = None) -> dict:
    """Return one example as a dict with question / answer and an alpaca-style split."""
    task = task or rng.choice(TASKS)
    if task == "add":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        q = f"What is {a} plus {b}?"
        ans = f"{a} plus {b} is {a + b}."
        ins, inp = "Add the two numbers.", f"{a} and {b}"
    elif task == "sub":
        a = rng.randint(0, 20)
        b = rng.randint(0, a)
        q = f"What is {a} minus {b}?"
        ans = f"{a} minus {b} is {a - b}."
        ins, inp = "Subtract the second number from the first.", f"{a} and {b}"
    elif task == "capital":
        country, city = rng.choice(CAPITALS)
        q = f"What is the capital of {country}?"
        ans = f"The capital of {country} is {city}."
        ins, inp = "Name the capital of the country.", country
    elif task == "colour":
        thing, colour = rng.choice(COLOURS)
        q = f"What colour is {thing}?"
        ans = f"{thing[0].upper() + thing[1:]} is {colour}."
        ins, inp = "Name the colour of the thing.", thing
    elif task == "reverse":
        w = rng.choice(WORDS)
        q = f"Reverse the word {w}."
        ans = f"The word {w} reversed is {w[::-1]}."
        ins, inp = "Reverse the word.", w
    elif task == "unit":
        big, big1, small, factor = rng.choice(UNITS)
        n = rng.randint(1, 9)
        q = f"How many {small} are in {_unit_phrase(n, big, big1)}?"
        ans = f"{_unit_phrase(n, big, big1)} is {n * factor} {small}."
        ins, inp = f"Convert to {small}.", _unit_phrase(n, big, big1)
    elif task == "opposite":
        w, o = rng.choice(OPPOSITES)
        if rng.random() < 0.5:
            w, o = o, w
        q = f"What is the opposite of {w}?"
        ans = f"The opposite of {w} is {o}."
        ins, inp = "Give the opposite of the word.", w
    else:  # pragma: no cover
        raise ValueError(task)
    return {"task": task, "question": q, "answer": ans, "instruction": ins, "input": inp}


# --------------------------------------------------------------------------------------
# Dataset writers
# --------------------------------------------------------------------------------------


def build_alpaca(rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(N_ROWS):
        ex = make_example(rng)
        if rng.random() < 0.35:  # instruction + separate input
            rows.append({"instruction": ex["instruction"], "input": ex["input"], "output": ex["answer"]})
        else:
            rows.append({"instruction": ex["question"], "input": "", "output": ex["answer"]})
    return rows


def _conversation(rng: random.Random) -> tuple[str | None, list[tuple[str, str]]]:
    """A (system prompt or None, [(question, answer), ...]) conversation."""
    system = rng.choice(SYSTEM_PROMPTS) if rng.random() < 0.4 else None
    n_turns = 2 if rng.random() < 0.3 else 1
    turns = []
    for _ in range(n_turns):
        ex = make_example(rng)
        turns.append((ex["question"], ex["answer"]))
    return system, turns


def build_sharegpt(rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(N_ROWS):
        system, turns = _conversation(rng)
        conv = [{"from": "system", "value": system}] if system else []
        for q, a in turns:
            conv += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        rows.append({"conversations": conv})
    return rows


def build_messages(rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(N_ROWS):
        system, turns = _conversation(rng)
        msgs = [{"role": "system", "content": system}] if system else []
        for q, a in turns:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rows.append({"messages": msgs})
    return rows


def build_prompt_completion(rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(N_ROWS):
        ex = make_example(rng)
        rows.append({"prompt": f"Question: {ex['question']}\nAnswer:", "completion": f" {ex['answer']}"})
    return rows


def _wrap(sentences: list[str], width: int = 78) -> str:
    """Greedy word wrap of a paragraph (no textwrap so output is trivially stable)."""
    lines, cur = [], ""
    for word in " ".join(sentences).split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur:
        lines.append(cur)
    return "\n".join(lines)


def _text_sentences(rng: random.Random, topic: str) -> list[str]:
    if topic == "arithmetic":
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        hi, lo = max(a, b), min(a, b)
        return [
            f"{a} plus {b} is {a + b}.",
            f"If you add {b} to {a} you get {a + b}.",
            f"{hi} minus {lo} is {hi - lo}.",
        ]
    if topic == "capitals":
        country, city = rng.choice(CAPITALS)
        return [
            f"The capital of {country} is {city}.",
            f"{city} is a big city in {country}.",
        ]
    if topic == "colours":
        thing, colour = rng.choice(COLOURS)
        cap = thing[0].upper() + thing[1:]
        return [f"{cap} is {colour}.", f"The colour of {thing} is {colour}."]
    if topic == "units":
        big, big1, small, factor = rng.choice(UNITS)
        n = rng.randint(1, 9)
        return [
            f"There are {factor} {small} in one {big1}.",
            f"So {_unit_phrase(n, big, big1)} is {n * factor} {small}.",
        ]
    if topic == "words":
        w = rng.choice(WORDS)
        return [f"The word {w} has {len(w)} letters.", f"The word {w} reversed is {w[::-1]}."]
    if topic == "opposites":
        w, o = rng.choice(OPPOSITES)
        return [f"The opposite of {w} is {o}.", f"The opposite of {o} is {w}."]
    raise ValueError(topic)


TEXT_TOPICS = ["arithmetic", "capitals", "colours", "units", "words", "opposites"]


def build_texts(rng: random.Random) -> dict[str, str]:
    texts = {}
    for topic in TEXT_TOPICS:
        paragraphs = []
        for _ in range(14):
            sentences: list[str] = []
            for _ in range(rng.randint(3, 5)):
                sentences += _text_sentences(rng, topic)
            paragraphs.append(_wrap(sentences))
        texts[f"{topic}.txt"] = "\n\n".join(paragraphs) + "\n"
    return texts


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_datasets() -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)
    TEXT_DIR.mkdir(parents=True)

    alpaca = build_alpaca(random.Random(SEED + 1))
    sharegpt = build_sharegpt(random.Random(SEED + 2))
    messages = build_messages(random.Random(SEED + 3))
    prompt_completion = build_prompt_completion(random.Random(SEED + 4))
    texts = build_texts(random.Random(SEED + 5))

    write_json(DATA_DIR / "alpaca.json", alpaca)
    write_jsonl(DATA_DIR / "alpaca.jsonl", alpaca)
    write_jsonl(DATA_DIR / "sharegpt.jsonl", sharegpt)
    write_jsonl(DATA_DIR / "messages.jsonl", messages)

    df = pd.DataFrame(prompt_completion, columns=["prompt", "completion"])
    df.to_csv(DATA_DIR / "prompt_completion.csv", index=False, lineterminator="\n")
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, DATA_DIR / "prompt_completion.parquet", compression="snappy")

    for name, text in texts.items():
        (TEXT_DIR / name).write_text(text, encoding="utf-8")

    return {
        "alpaca": alpaca,
        "sharegpt": sharegpt,
        "messages": messages,
        "prompt_completion": prompt_completion,
        "texts": texts,
    }


# --------------------------------------------------------------------------------------
# Tokenizer + model
# --------------------------------------------------------------------------------------


def _tokenizer_corpus(data: dict) -> list[str]:
    corpus: list[str] = []
    for r in data["alpaca"]:
        corpus += [r["instruction"], r["input"], r["output"]]
    for r in data["messages"]:
        for m in r["messages"]:
            # Include the role headers the chat template renders.
            corpus.append(f"{m['role']}\n{m['content']}\n")
    for r in data["prompt_completion"]:
        corpus.append(r["prompt"] + r["completion"])
    corpus += list(data["texts"].values())
    return [c for c in corpus if c]


def build_tokenizer(data: dict):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(data), trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=[IM_START, IM_END],
        model_max_length=MAX_LEN,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def build_model(tokenizer):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LEN,
        # Wider than the 0.02 default: with a frozen random lm_head behind the final
        # RMSNorm, 0.02 caps the reachable logit range so LoRA could barely lower the
        # loss; 0.1 lets both LoRA and full fine-tuning visibly learn in ~40 steps.
        initializer_range=0.1,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        # Chat turns end with <|im_end|>: generation stops there as well as at </s>.
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")],
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def write_model(data: dict) -> None:
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    MODEL_DIR.mkdir(parents=True)
    tokenizer = build_tokenizer(data)
    model = build_model(tokenizer)
    tokenizer.save_pretrained(MODEL_DIR)
    model.save_pretrained(MODEL_DIR, safe_serialization=True)


def main() -> None:
    data = write_datasets()
    write_model(data)
    for p in sorted(ASSETS.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.name != Path(__file__).name:
            print(f"{p.stat().st_size:>9}  {p.relative_to(ASSETS)}")


if __name__ == "__main__":
    main()
