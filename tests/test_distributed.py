"""Several processes under torchrun on CPU (gloo), with the tiny model: real `tunetop run --processes 2`
subprocesses, real signals.

Launches are what cost time here (two ranks importing torch and transformers on a shared CPU), so runs are
shared: one single-process and one 2-process DDP reference (module fixtures) serve the exactness checks,
the event checks and the losses that a stopped, killed and resumed run must reproduce.

Exactness: the data is cut to 16 rows = one global batch (4 rows x 2 accumulation x 2 ranks, or 4 x 4 in one
process), so every run's first optimizer step sees the same rows whatever the sampler does; plain SGD
(update = lr x gradient) makes the checkpoint-1 adapters differ exactly as the gradients do.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from engine import events, rundir

from .helpers import ROOT, merged, run_cli, toml_text, wait_until

pytestmark = pytest.mark.slow

STEPS = 6
SETTINGS = {
    "data": {"max_samples": 16},
    "training": {"max_steps": STEPS, "micro_batch": 4, "grad_accum": 2, "optimizer": "sgd", "learning_rate": 1.0,
                 "save_steps": 1, "save_total_limit": 10},
}
# Bounded teardown in tests: the agent waits at most this long for ranks after a stop or a dead peer.
FAST_TEARDOWN = {"TUNETOP_DIST_SHUTDOWN_S": "30", "TUNETOP_DIST_TIMEOUT_S": "60"}


def write_profile(folder, name: str, overrides: dict | None = None):
    combined = {section: dict(values) for section, values in SETTINGS.items()}
    for section, values in (overrides or {}).items():
        combined.setdefault(section, {}).update(values)
    path = folder / f"{name}.toml"
    path.write_text(toml_text(merged(combined)))   # None removes a key (LoRA settings for a full fine-tune)
    return path


def all_events(run_dir) -> list[dict]:
    return events.read_all(run_dir / "events.jsonl")


def step_losses(run_dir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in all_events(run_dir) if e["type"] == "step"}


def adapter_diff(a_dir, b_dir) -> float:
    from safetensors.torch import load_file
    a, b = (load_file(d / "adapter_model.safetensors") for d in (a_dir, b_dir))
    assert a.keys() == b.keys() and a
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def rank_pids(run_dir) -> list[int]:
    start = [e for e in all_events(run_dir) if e["type"] == "start"][-1]
    return [r["pid"] for r in start["ranks"]]


def gone(pids) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def launch_together(*runs: list[str]) -> list[tuple[object, str]]:
    """`tunetop run ARGS` for each, all at once (each one's ranks wait on imports and collectives, so
    together they take less wall time than one after the other). Returns (run directory, output) each."""
    env = {**os.environ, **FAST_TEARDOWN}
    procs = [subprocess.Popen([sys.executable, "-m", "tuiapp", "run", *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for args in runs]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [o[-3000:] for o in outs]
    return [(started(out), out) for out in outs]


def started(output: str):
    """The run directory `tunetop run` said it started ("run ID started (PATH)")."""
    return rundir.resolve(next(line.split()[1] for line in output.splitlines()
                               if line.startswith("run ") and " started " in line))


@pytest.fixture(scope="module")
def home_dir(tmp_path_factory):
    h = tmp_path_factory.mktemp("dist")
    old = {k: os.environ.get(k) for k in ("TUNETOP_HOME", "XDG_CONFIG_HOME")}
    os.environ["TUNETOP_HOME"] = str(h / "home")
    os.environ["XDG_CONFIG_HOME"] = str(h / "config")
    yield h
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def references(home_dir):
    """One process over the same 16 rows per step (4 x 4 accumulation), and 2 DDP processes (4 x 2 each)."""
    (single, _), (ddp, out) = launch_together(
        [str(write_profile(home_dir, "single", {"training": {"grad_accum": 4}}))],
        [str(write_profile(home_dir, "ddp")), "--processes", "2"])
    assert "layout: ddp: world size 2, 2 CPU processes (gloo)" in out
    return single, ddp


@pytest.fixture(scope="module")
def single(references):
    return references[0]


@pytest.fixture(scope="module")
def ddp(references):
    return references[1]


@pytest.fixture(scope="module")
def fsdp_runs(home_dir):
    """Two "machines" (two `tunetop run --nnodes 2 --node-rank 0|1`, one process each) training one LoRA run
    under FSDP, and a full fine-tune under FSDP with 2 processes, all at once."""
    nodes = write_profile(home_dir, "nodes", {"training": {"max_steps": 2}})
    full = write_profile(home_dir, "fsdpfull", {"method": {"type": "full", "lora_r": None, "lora_alpha": None,
                                                           "lora_dropout": None},
                                                "training": {"max_steps": 2, "learning_rate": 1e-3,
                                                             "optimizer": "adamw_torch", "save_steps": 2}})
    common = ["--nnodes", "2", "--processes", "1", "--strategy", "fsdp", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    (main, _), (node, _), (full_dir, _) = launch_together([str(nodes), "--node-rank", "0", *common],
                                                          [str(nodes), "--node-rank", "1", *common],
                                                          [str(full), "--processes", "2", "--strategy", "fsdp"])
    return {"main": main, "node": node, "full": full_dir}


def test_ddp_run_completes_with_world_size_2_and_matches_one_process(ddp, single):
    state = rundir.read_state(ddp)
    assert state.status == "completed" and state.step == STEPS
    start = next(e for e in all_events(ddp) if e["type"] == "start")
    assert start["world_size"] == 2 and start["strategy"] == "ddp" and start["nodes"] == 1
    assert start["effective_batch"] == 16
    assert [r["rank"] for r in start["ranks"]] == [0, 1] and all(r["device"] == "cpu" for r in start["ranks"])
    steps = [e for e in all_events(ddp) if e["type"] == "step"]
    assert all([m["rank"] for m in e["memory_ranks"]] == [0, 1] and all(m["rss"] > 0 for m in e["memory_ranks"])
               for e in steps)
    # One writer: every step once, one start, one end.
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    assert sum(e["type"] in ("start", "end") for e in all_events(ddp)) == 2
    losses = step_losses(ddp)
    assert losses[STEPS] < losses[1] - 0.3, losses
    log = (ddp / "engine.log").read_text()
    assert "[rank1]: " in log and "[rank0]: " in log
    # Exactness: the same update as one process over the same rows.
    diff = adapter_diff(ddp / "checkpoints/checkpoint-1", single / "checkpoints/checkpoint-1")
    print(f"\nDDP (2 processes) vs 1 process, checkpoint-1 adapter: max abs diff {diff:.3g} (fp32)")
    assert diff < 1e-6
    reference = step_losses(single)
    for step in range(1, STEPS + 1):
        assert losses[step] == pytest.approx(reference[step], abs=1e-4), step


def test_ddp_adapter_loads_and_generates(ddp):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(ROOT / "assets/tiny-llama"))
    model = PeftModel.from_pretrained(base, str(ddp / "adapter"))
    tok = AutoTokenizer.from_pretrained(str(ddp / "adapter"))
    ids = tok("hello", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1]


def test_agent_killed_ends_every_rank(home_dir):
    """kill -9 of torchrun's agent: its ranks (each in its own session) leave within a second or two."""
    path = write_profile(home_dir, "agentkill", {"training": {"max_steps": 200}})
    out = run_cli("run", "--detach", str(path), "--processes", "2", env=FAST_TEARDOWN)
    assert out.returncode == 0, out.stderr
    run_dir = started(out.stdout)
    agent = psutil.Process(rundir.read_pid(run_dir)["pid"])
    log = run_dir / "engine.log"
    # Each rank says when it watches its agent (the first thing it does).
    wait_until(lambda: log.exists() and log.read_text().count("watching the torchrun agent") == 2, timeout=120,
             what="both ranks to start")
    ranks = [c.pid for c in agent.children()]
    assert len(ranks) == 2
    agent.kill()
    t0 = time.time()
    wait_until(lambda: gone(ranks), timeout=15, what="every rank to exit after the agent died")
    print(f"\nagent killed: every rank gone after {time.time() - t0:.1f} s")
    assert rundir.read_state(run_dir).status in ("interrupted", "failed to start")


def test_stop_kill_rank1_and_resume_reproduce_the_uninterrupted_run(home_dir, ddp):
    """Stop mid-run (one checkpoint, stopped, nothing left running), resume, kill -9 rank 1 (every process
    gone within the teardown timeout, interrupted), resume again: the losses of every step are the
    uninterrupted 2-process run's. The first segment also has an OOM injected on rank 1 only at step 2:
    every rank splits that step together (no hang) and the losses do not change."""
    path = write_profile(home_dir, "stopkill", {"training": {"save_steps": 2}})
    # Slow steps (1 s) so that the stop lands mid-run; they change no number.
    oom = {"TUNETOP_FAULT_OOM_STEPS": "2", "TUNETOP_FAULT_OOM_RANK": "1", "TUNETOP_FAULT_SLOW_STEP_S": "1"}
    out = run_cli("run", "--detach", str(path), "--processes", "2", env={**FAST_TEARDOWN, **oom})
    assert out.returncode == 0, out.stderr
    run_dir = started(out.stdout)
    wait_until(lambda: max(step_losses(run_dir), default=0) >= 2, timeout=300, what="step 2")
    agent = rundir.read_pid(run_dir)["pid"]
    pids = [agent, *rank_pids(run_dir)]
    stop = run_cli("stop", run_dir.name, "--wait")
    assert stop.returncode == 0, stop.stderr
    wait_until(lambda: gone(pids), timeout=60, what="every process to exit after stop")
    state = rundir.read_state(run_dir)
    assert state.status == "stopped", state.status
    stopped_at = state.step
    assert 2 <= stopped_at < STEPS
    assert rundir.last_checkpoint(run_dir).name == f"checkpoint-{stopped_at}"
    backoffs = [e for e in all_events(run_dir) if e["type"] == "backoff"]
    assert backoffs and backoffs[0]["step"] == 2, backoffs
    # The event names the rank that ran out and what every rank did (the same split on both).
    first = backoffs[0]
    assert first["oom_rank"] == 1 and "out of memory on rank 1" in first["message"], first
    assert [(r["rank"], r["oom"]) for r in first["ranks"]] == [(0, False), (1, True)]
    assert {r["micro_batch"] for r in first["ranks"]} == {first["after"]["micro_batch"]}
    assert state.last_oom_rank == 1 and state.world_size == 2 and state.strategy == "ddp"
    assert [rank for rank, _, rss in state.rank_memory if rss] == [0, 1]

    out = run_cli("resume", "--detach", run_dir.name, env={**FAST_TEARDOWN, "TUNETOP_FAULT_SLOW_STEP_S": "1"})
    assert out.returncode == 0, out.stderr
    wait_until(lambda: len([e for e in all_events(run_dir) if e["type"] == "start"]) == 2
             and max(step_losses(run_dir)) >= stopped_at + 1, timeout=300, what="the resumed run to step")
    pids = [rundir.read_pid(run_dir)["pid"], *rank_pids(run_dir)]
    os.kill(pids[2], signal.SIGKILL)   # rank 1
    t0 = time.time()
    wait_until(lambda: gone(pids), timeout=60, what="every process to exit after rank 1 was killed")
    print(f"\nrank 1 killed: every process gone after {time.time() - t0:.1f} s")
    assert rundir.read_state(run_dir).status == "interrupted"

    out = run_cli("resume", run_dir.name, env=FAST_TEARDOWN)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    state = rundir.read_state(run_dir)
    assert state.status == "completed" and state.step == STEPS
    losses, reference = step_losses(run_dir), step_losses(ddp)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert losses[step] == pytest.approx(reference[step], abs=1e-4), (step, losses, reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine_train_one_fsdp_run(fsdp_runs, ddp):
    """Two `tunetop run --nnodes 2 --node-rank 0|1` (one process each) train one FSDP run together; node 1
    keeps its own run directory (start, end, engine log, pid, its checkpoints). FSDP over 2 ranks makes the
    same first update as DDP over 2."""
    main_dir, node_dir = fsdp_runs["main"], fsdp_runs["node"]
    main = rundir.read_state(main_dir)
    assert main.status == "completed" and main.step == 2
    start = next(e for e in all_events(main_dir) if e["type"] == "start")
    assert (start["world_size"], start["nodes"], start["strategy"]) == (2, 2, "fsdp")
    assert sorted(r["node_rank"] for r in start["ranks"]) == [0, 1]
    assert rundir.read_state(node_dir).status == "completed"
    assert not [e for e in all_events(node_dir) if e["type"] == "step"]   # steps live on machine 0
    assert (node_dir / "engine.log").stat().st_size > 0 and rundir.read_pid(node_dir)
    assert (node_dir / "checkpoints/checkpoint-1").is_dir()   # each machine saves its own checkpoints
    diff = adapter_diff(main_dir / "checkpoints/checkpoint-1", ddp / "checkpoints/checkpoint-1")
    print(f"\nFSDP (2 nodes x 1 process) vs DDP (2 processes), checkpoint-1 adapter: max abs diff {diff:.3g}")
    assert diff < 1e-6


def test_full_fine_tune_under_fsdp_completes_and_loads(fsdp_runs):
    import torch
    from transformers import AutoModelForCausalLM

    run_dir = fsdp_runs["full"]
    state = rundir.read_state(run_dir)
    assert state.status == "completed" and state.step == 2
    start = next(e for e in all_events(run_dir) if e["type"] == "start")
    assert start["strategy"] == "fsdp" and start["world_size"] == 2
    model = AutoModelForCausalLM.from_pretrained(str(run_dir / "model"))
    with torch.no_grad():
        out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] == 6
