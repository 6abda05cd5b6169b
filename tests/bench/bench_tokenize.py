"""Benchmark: rows/s tokenizing chat rows through tunetop's path against trl's own tokenization.

Both tokenize the same synthetic multi-turn rows (system prompt, 1-3 exchanges) with the bundled tiny
tokenizer and its chat template (which carries `{% generation %}` markers, so trl's assistant mask works):
- tunetop: engine.train.tokenize.tokenize_rows (two renderings per row: real and sentinel, verified
  alignment, then one tokenization with offsets to build the mask);
- trl:     trl.trainer.sft_trainer._tokenize(..., return_assistant_tokens_mask=True), the function
  SFTTrainer maps over a conversational dataset (one rendering plus tokenization), called row by row.
It also prints how often the two masks agree token for token (they should, on this template).

    python tests/bench/bench_tokenize.py [--rows 100000]

Timings are wall-clock on whatever else the machine is doing: run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("the quick brown fox jumps over lazy dog river stone cloud seven blue minute metre answer question "
         "plus minus capital country colour opposite word letter number").split()


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def sentence(k):
        return " ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + "."
    out = []
    for _ in range(n):
        msgs = [{"role": "system", "content": sentence(6)}] if rng.random() < 0.5 else []
        for _ in range(rng.randint(1, 3)):
            msgs += [{"role": "user", "content": sentence(rng.randint(4, 14))},
                     {"role": "assistant", "content": sentence(rng.randint(4, 24))}]
        out.append({"messages": msgs})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    from transformers import AutoTokenizer
    from trl.trainer.sft_trainer import _tokenize

    from engine.train.tokenize import tokenize_rows
    tok = AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-llama")
    data = rows(args.rows)

    t0 = time.perf_counter()
    ours = tokenize_rows(tok, data, max_seq_len=10_000, completion_only=True)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    theirs = [_tokenize(tok, r["messages"], return_assistant_tokens_mask=True) for r in data]
    t_trl = time.perf_counter() - t0

    agree = sum(a["input_ids"] == list(b["input_ids"]) and a["completion_mask"] == list(b["assistant_masks"])
                for a, b in zip(ours.rows, theirs))
    print(f"rows: {args.rows:,} chat rows (tiny tokenizer, bundled template), "
          f"{len(ours.rows):,} tokenized by tunetop ({len(ours.skipped)} skipped)")
    print(f"{'path':<40}{'seconds':>10}{'rows/s':>12}")
    print(f"{'tunetop tokenize_rows (exact masking)':<40}{t_ours:>10.1f}{args.rows / t_ours:>12,.0f}")
    print(f"{'trl _tokenize (assistant mask)':<40}{t_trl:>10.1f}{args.rows / t_trl:>12,.0f}")
    print(f"ratio tunetop/trl time: {t_ours / t_trl:.2f}x; masks identical on {agree:,} of {len(theirs):,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
