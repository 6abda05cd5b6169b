"""End to end: `tunetop run` trains the tiny model for real, for every method and every data format.

Each run is a real detached engine subprocess, followed by the real CLI. The result must load with
peft (or transformers for a full fine-tune) and generate.
"""
from __future__ import annotations

import pytest

from engine import events, rundir

from .helpers import DATA, TINY_MODEL, run_cli

NO_LORA = {"lora_r": None, "lora_alpha": None, "lora_dropout": None}

# Every data source, and every method more than once across them.
CASES = [
    ("alpaca.json", "qlora"),
    ("alpaca.jsonl", "lora"),
    ("sharegpt.jsonl", "full"),
    ("messages.jsonl", "qlora"),
    ("prompt_completion.csv", "lora"),
    ("prompt_completion.parquet", "full"),
    ("text", "lora"),
]


def method_overrides(method: str) -> dict:
    if method == "full":
        return {"method": {"type": "full", **NO_LORA}, "training": {"learning_rate": 3e-3}}
    return {"method": {"type": method}}


@pytest.mark.slow
@pytest.mark.parametrize("source,method", CASES, ids=[f"{s}-{m}" for s, m in CASES])
def test_run_completes_loss_falls_and_result_generates(source, method, home, make_profile):
    overrides = method_overrides(method)
    overrides.setdefault("training", {}).update(max_steps=10, save_steps=100)
    overrides["data"] = {"path": str(DATA / source)}
    if source == "text":
        overrides["training"].update(completion_only_loss=False, max_seq_len=64)
    result = run_cli("run", str(make_profile(f"e2e-{method}", overrides)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "completed: step 10/10" in result.stdout

    run_dir = rundir.resolve("last")
    # The launcher says how the engine's OpenMP threads wait (engine/threads.py); the suite sets PASSIVE.
    assert (run_dir / rundir.LOG).read_text().startswith("threads: OMP_WAIT_POLICY=PASSIVE (set in the environment)")
    evs = events.read_all(run_dir / "events.jsonl")
    start = next(e for e in evs if e["type"] == "start")
    assert start["method"] == method and start["total_steps"] == 10
    assert start["data_format"] == ("text" if source == "text" else source.split(".")[0].replace("-", "_"))
    steps = [e for e in evs if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 11))
    for e in steps:
        assert e["loss"] > 0 and e["lr"] >= 0 and e["tokens_seen"] > 0 and e["memory"]["rss"] > 0
    losses = [e["loss"] for e in steps]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, f"loss did not fall: {losses}"
    assert evs[-1]["type"] == "end" and evs[-1]["status"] == "completed"
    assert rundir.read_state(run_dir).status == "completed"

    from transformers import AutoModelForCausalLM, AutoTokenizer
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
        tok = AutoTokenizer.from_pretrained(run_dir / "model")
    else:
        from peft import PeftModel
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY_MODEL), run_dir / "adapter")
        tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.slow
def test_merge_writes_a_plain_model(home, make_profile):
    result = run_cli("run", str(make_profile("merge", {"training": {"max_steps": 2}})))
    assert result.returncode == 0, result.stderr
    merged = run_cli("merge", "last")
    assert merged.returncode == 0, merged.stderr
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(rundir.resolve("last") / "merged")
    assert not any("lora" in n for n, _ in model.named_parameters())
