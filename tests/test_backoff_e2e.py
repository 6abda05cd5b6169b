"""OOM backoff end to end: real engine processes on the tiny model with the fault hooks.

A run with OOMs injected at chosen steps (one in a backward pass, one in a forward pass, plus a grow-back
that fails) must end with the same optimizer steps, logged losses, token counts and adapter weights as a
run without any (fp32 tolerance). An OOM in the optimizer step relaunches the engine from its checkpoint
and ends the same. A step that never fits exhausts the ladder: exit status 3, a clear message, and a
checkpoint of the last completed step that `--resume` continues from to the same result. The probe settles
the split before step 1; micro_batch = "auto" finds what fits; the fit cache makes the next run start there.
"""
from __future__ import annotations

import pytest

from engine.train.backoff import EXIT_OOM, OVERRIDE_FILE, STATE_FILE, read_state

from .backoff_helpers import adapter_weights, dump, engine_env, new_run, read_events, run_engine
from .helpers import merged, toml_text

FAST = {"data": {"max_samples": 120}, "training": {"seed": 1}}
TOL = 1e-5


def profile(tmp_path, name="bo", **training):
    over = {"data": dict(FAST["data"]), "training": {**FAST["training"], **training}}
    path = tmp_path / f"{name}.toml"
    path.write_text(toml_text(merged(over)))
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The reference: the same run without any out-of-memory error."""
    tmp = tmp_path_factory.mktemp("clean")
    run_dir = new_run(profile(tmp), tmp / "home")
    result = run_engine(run_dir, engine_env(tmp / "home"))
    assert result.returncode == 0, result.stderr[-3000:]
    evs = read_events(run_dir)
    assert not [e for e in evs if e["type"] == "backoff"]
    return run_dir, evs


def steps(evs):
    return {e["step"]: e for e in evs if e["type"] == "step"}


def assert_same_training(run_dir, evs, clean):
    clean_dir, clean_evs = clean
    ref, got = steps(clean_evs), steps(evs)
    assert sorted(got) == sorted(ref) == list(range(1, 9)), "the same optimizer steps"
    for n in ref:
        assert got[n]["loss"] == pytest.approx(ref[n]["loss"], rel=1e-6), f"loss at step {n}"
        assert got[n]["grad_norm"] == pytest.approx(ref[n]["grad_norm"], rel=1e-5), f"grad norm at step {n}"
        assert got[n]["tokens_seen"] == ref[n]["tokens_seen"] and got[n]["lr"] == ref[n]["lr"]
    a, b = adapter_weights(clean_dir), adapter_weights(run_dir)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"adapter weights: max |difference| to the run without OOM = {diff:.3e}")
    assert diff < TOL
    assert evs[-1]["type"] == "end" and evs[-1]["status"] == "completed" and evs[-1]["step"] == 8


@pytest.mark.slow
def test_injected_ooms_lose_no_step(tmp_path, clean):
    run_dir = new_run(profile(tmp_path, grow_back_after=2), tmp_path / "home")
    result = run_engine(run_dir, engine_env(tmp_path / "home", TUNETOP_FAULT_OOM_STEPS="3,6:forward"))
    evs = read_events(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    backoffs = [e for e in evs if e["type"] == "backoff"]
    for e in backoffs:
        print(f"  backoff event: {e['message']}")
    expected = [(3, "split"), (6, "grow_back"), (6, "split")]
    assert [(e["step"], e["action"]) for e in backoffs] == expected, dump(backoffs)
    first = backoffs[0]
    assert first["phase"] == "backward" and first["reason"] == "oom"
    assert first["before"]["micro_batch"] == 4 and first["after"]["micro_batch"] == 2
    assert "step 3: out of memory in the backward pass" in first["message"]
    assert "micro-batch 4 -> 2, accumulation 2 -> 4, effective batch 8 kept" in first["message"]
    assert "trying a larger size again" in backoffs[1]["message"] and "grow_back_after = 2" in backoffs[1]["message"]
    assert_same_training(run_dir, evs, clean)
    saved = read_state(run_dir / "checkpoints" / "checkpoint-8" / STATE_FILE)
    assert saved.split == 2 and saved.grow_failures == 1      # the split is part of the checkpoint


@pytest.mark.slow
def test_oom_in_optimizer_step_relaunches_from_checkpoint(tmp_path, clean):
    run_dir = new_run(profile(tmp_path), tmp_path / "home")
    result = run_engine(run_dir, engine_env(tmp_path / "home", TUNETOP_FAULT_OOM_OPTIMIZER=6))
    evs = read_events(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    relaunch = [e for e in evs if e["type"] == "backoff"]
    assert [(e["step"], e["action"]) for e in relaunch] == [(6, "relaunch")], dump(relaunch)
    print(f"  backoff event: {relaunch[0]['message']}")
    assert "relaunching from checkpoint-4" in relaunch[0]["message"]
    starts = [e for e in evs if e["type"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, 4]
    assert starts[1]["micro_batch"] == 2 and starts[1]["grad_accum"] == 4
    assert read_state(run_dir / OVERRIDE_FILE).relaunches == 1
    assert_same_training(run_dir, evs, clean)


@pytest.mark.slow
def test_ladder_exhaustion_fails_clearly_and_resumes(tmp_path, clean):
    run_dir = new_run(profile(tmp_path), tmp_path / "home")
    result = run_engine(run_dir, engine_env(tmp_path / "home", TUNETOP_FAULT_OOM_STEPS="6:always"))
    evs = read_events(run_dir)
    end = evs[-1]
    print(f"  exit status {result.returncode}\n  error: {end['error']}\n  hint: {end['hint']}")
    assert result.returncode == EXIT_OOM
    assert end["type"] == "end" and end["status"] == "failed"
    assert "at step 6" in end["error"] and "micro-batch 2, micro-batch 1, gradient checkpointing" in end["error"]
    assert "checkpoint-5" in end["hint"] and "tunetop resume" in end["hint"] and "max_seq_len" in end["hint"]
    assert [e["action"] for e in evs if e["type"] == "backoff"] == ["split", "split", "gradient_checkpointing", "stop"]
    ckpt = run_dir / "checkpoints" / "checkpoint-5"
    assert (ckpt / "trainer_state.json").exists() and read_state(ckpt / STATE_FILE).split == 4
    resumed = run_engine(run_dir, engine_env(tmp_path / "home"), resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    evs = read_events(run_dir)
    starts = [s for s in evs if s["type"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, 5]
    assert starts[1]["micro_batch"] == 1 and starts[1]["gradient_checkpointing"]   # the size saved in checkpoint-5
    assert_same_training(run_dir, evs, clean)


@pytest.mark.slow
def test_probe_settles_the_split_before_step_1_and_the_fit_cache_remembers(tmp_path):
    home = tmp_path / "home"
    env = engine_env(home, TUNETOP_FAULT_OOM_TOKENS=200)
    path = profile(tmp_path, max_steps=2)
    first = new_run(path, home)
    result = run_engine(first, env)
    assert result.returncode == 0, result.stderr[-3000:]
    evs = read_events(first)
    backoffs = [e for e in evs if e["type"] == "backoff"]
    print("\n".join(f"  run 1: {e['message']}" for e in backoffs))
    assert backoffs and all(e["step"] == 0 and e["reason"] == "oom_probe" for e in backoffs), dump(backoffs)
    start = next(e for e in evs if e["type"] == "start")
    assert start["micro_batch"] == 2 and start["grad_accum"] == 4 and start["effective_batch"] == 8
    assert evs[-1]["status"] == "completed"            # and no OOM during training: no backoff after step 0

    second = new_run(path, home)
    result = run_engine(second, env)
    assert result.returncode == 0, result.stderr[-3000:]
    evs2 = read_events(second)
    backoffs = [e for e in evs2 if e["type"] == "backoff"]
    print("\n".join(f"  run 2: {e['message']}" for e in backoffs))
    assert [e["reason"] for e in backoffs] == ["fit_cache"], dump(backoffs)   # no OOM at all
    assert next(e for e in evs2 if e["type"] == "start")["micro_batch"] == 2
    assert (home / "fitcache.json").exists()


def longest_rows_tokens(max_samples=120, max_seq_len=128):
    """Token counts of the training rows, tokenized as the engine does."""
    from engine.data import load_data
    from engine.profile import load
    from engine.train.model import load_tokenizer
    from engine.train.tokenize import ensure_chat_template, tokenize_rows
    from .helpers import TINY_MODEL
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        p = load(profile(Path(d)))
    report = load_data(p.data)
    tok = load_tokenizer(str(TINY_MODEL), "main", False)
    if report.format != "text":
        ensure_chat_template(tok)
    rows = tokenize_rows(tok, report.train, max_seq_len, True).rows
    return sorted((len(r["input_ids"]) for r in rows), reverse=True)


@pytest.mark.slow
def test_auto_micro_batch_picks_what_fits_and_the_cache_starts_there(tmp_path):
    limit = 200
    lengths = longest_rows_tokens()
    # The worst chunk of r rows is the r longest rows padded to the longest: r x lengths[0] tokens.
    expected = max(r for r in (8, 4, 2, 1) if r * lengths[0] <= limit)
    home = tmp_path / "home"
    env = engine_env(home, TUNETOP_FAULT_OOM_TOKENS=limit)
    path = profile(tmp_path, max_steps=2, micro_batch="auto", effective_batch=8)
    runs = []
    for _ in range(2):
        run_dir = new_run(path, home)
        result = run_engine(run_dir, env)
        assert result.returncode == 0, result.stderr[-3000:]
        evs = read_events(run_dir)
        note = next(e["message"] for e in evs if e["type"] == "log" and "auto" in e["message"])
        start = next(e for e in evs if e["type"] == "start")
        print(f"  {note}")
        assert start["micro_batch"] == expected and start["grad_accum"] == 8 // expected
        assert not [e for e in evs if e["type"] == "backoff"]
        runs.append(note)
    assert "started from the whole effective batch" in runs[0]
    assert "started from the fit cache" in runs[1] and runs[1].endswith(f"rows: {expected} fits)")


@pytest.mark.slow
def test_two_ranks_agree_on_the_auto_micro_batch(tmp_path):
    """micro_batch = "auto" under DDP (2 CPU ranks, gloo) where only rank 1 is "small" (the token fault limited
    to rank 1): the ranks search together, so both train at the size that fits rank 1, with no hang."""
    limit = 200
    lengths = longest_rows_tokens()
    expected = max(r for r in (8, 4, 2, 1) if r * lengths[0] <= limit)
    assert expected < 8        # rank 0 alone would take the whole batch
    home = tmp_path / "home"
    path = profile(tmp_path, max_steps=1, micro_batch="auto", effective_batch=8, save_steps=100)
    run_dir = new_run(path, home)
    result = run_ddp(run_dir, engine_env(home, TUNETOP_FAULT_OOM_TOKENS=limit, TUNETOP_FAULT_OOM_RANK=1))
    assert result.returncode == 0, result.stderr[-3000:]
    evs = read_events(run_dir)
    start = next(e for e in evs if e["type"] == "start")
    note = next(e["message"] for e in evs if e["type"] == "log" and "auto" in e["message"])
    print(f"\n  {note}")
    assert start["world_size"] == 2 and start["micro_batch"] == expected and start["grad_accum"] == 8 // expected
    assert start["effective_batch"] == 16
    assert [e["step"] for e in evs if e["type"] == "step"] == [1]
    # Every rank says the size it settled on (engine.log): the same on both.
    settled = [line for line in result.stderr.splitlines() if 'micro_batch = "auto": ' in line]
    assert len(settled) == 2 and all(f"{expected} rows per pass" in line for line in settled), settled


def run_ddp(run_dir, env, timeout=600):
    import os
    import subprocess
    import sys
    port = str(20000 + (os.getpid() * 7 + len(str(run_dir))) % 20000)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "engine.train", str(run_dir)]
    return subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_ranks_decide_together(tmp_path):
    """Data parallel on CPU (gloo): an OOM on rank 1 only. Both ranks must retry the step split, in step,
    without hanging in a collective, and end where a run without OOM ends."""
    home = tmp_path / "home"
    path = profile(tmp_path, max_steps=4, save_steps=100)
    clean_dir = new_run(path, home)
    result = run_ddp(clean_dir, engine_env(home))
    assert result.returncode == 0, result.stderr[-3000:]
    fault_dir = new_run(path, home)
    result = run_ddp(fault_dir, engine_env(home, TUNETOP_FAULT_OOM_STEPS=3, TUNETOP_FAULT_OOM_RANK=1))
    assert result.returncode == 0, result.stderr[-3000:]
    evs = read_events(fault_dir)
    backoffs = [e for e in evs if e["type"] == "backoff"]
    print("\n".join(f"  rank 0 wrote: {e['message']}" for e in backoffs))
    assert [(e["step"], e["action"]) for e in backoffs] == [(3, "split")]
    # Rank 0 writes the event, and it names the rank that ran out and what every rank does now.
    b = backoffs[0]
    assert "on rank 1" in b["message"] and "effective batch 16 kept" in b["message"], b["message"]
    assert b["oom_rank"] == 1 and b["oom_ranks"] == [1]
    assert [(r["rank"], r["oom"], r["micro_batch"], r["grad_accum"]) for r in b["ranks"]] == \
        [(0, False, b["after"]["micro_batch"], b["after"]["grad_accum"]),
         (1, True, b["after"]["micro_batch"], b["after"]["grad_accum"])]
    ref = steps(read_events(clean_dir))
    got = steps(evs)
    assert sorted(got) == [1, 2, 3, 4]
    for n in ref:
        assert got[n]["loss"] == pytest.approx(ref[n]["loss"], rel=1e-6)
        assert got[n]["tokens_seen"] == ref[n]["tokens_seen"]
    a, b = adapter_weights(clean_dir), adapter_weights(fault_dir)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"  2 ranks: max |adapter difference| to the run without OOM = {diff:.3e}")
    assert diff < TOL
