"""Detached runs: they outlive their launcher and SIGHUP, stop gracefully on SIGTERM with a resumable
checkpoint, resume with the same data order, and a kill -9 shows as interrupted, never as running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from engine import events, rundir

from .helpers import ROOT, run_cli, wait_until


def step_losses(run_dir) -> dict[int, float]:
    # The last value logged for each step (a resumed run logs steps after the checkpoint again).
    return {e["step"]: e["loss"] for e in events.read_all(run_dir / "events.jsonl") if e["type"] == "step"}


def current_step(run_dir) -> int:
    return max(step_losses(run_dir), default=0)


@pytest.mark.slow
def test_run_survives_its_launcher_exiting_and_sighup(home, make_profile):
    profile = make_profile("orphan", {"training": {"max_steps": 6}})
    # A launcher process that starts the run and exits at once, like a closed terminal.
    code = textwrap.dedent(f"""
        from engine import launch
        from engine.profile import load
        print(launch.launch(load({str(profile)!r})))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    run_dir = rundir.resolve(out.stdout.strip().splitlines()[-1])
    pid = rundir.alive_pid(run_dir)
    assert pid is not None, "engine not running after its launcher exited"
    assert os.getsid(pid) == pid, "the engine must lead its own session (no controlling terminal)"
    wait_until(lambda: current_step(run_dir) >= 1, what="first step")
    # A LoRA run with a plain optimizer never loads bitsandbytes (engine/train/lean_imports.py); its native
    # library is what its import maps. (The QLoRA runs of test_engine_e2e.py prove it still loads when used.)
    with open(f"/proc/{pid}/maps") as maps:
        assert "bitsandbytes" not in maps.read()
    os.kill(pid, signal.SIGHUP)  # what a dropped SSH connection sends
    wait_until(lambda: rundir.alive_pid(run_dir) is None, timeout=240, what="the run to finish")
    state = rundir.read_state(run_dir)
    assert state.status == "completed" and state.step == 6


@pytest.mark.slow
def test_sigterm_stops_with_checkpoint_and_resume_matches_an_uninterrupted_run(home, make_profile):
    settings = {"training": {"max_steps": 14, "save_steps": 100, "scheduler": "cosine", "warmup_ratio": 0.1}}
    # Reference: the same profile, never interrupted.
    assert run_cli("run", str(make_profile("ref", settings))).returncode == 0
    reference = step_losses(rundir.resolve("last"))

    # A second's pause after each step (a sleep: the arithmetic is untouched) keeps this run training while
    # `tunetop stop` starts up; on a quiet machine the 10 remaining steps otherwise finish first.
    started = run_cli("run", "--detach", str(make_profile("stopme", settings)),
                      env={"TUNETOP_FAULT_SLOW_STEP_S": "1"})
    assert started.returncode == 0, started.stderr
    run_dir = rundir.resolve("last")
    assert run_dir.name.endswith("stopme")
    wait_until(lambda: current_step(run_dir) >= 4, timeout=240, what="step 4")
    stop = run_cli("stop", run_dir.name, "--wait")
    assert stop.returncode == 0, stop.stderr
    state = rundir.read_state(run_dir)
    assert state.status == "stopped", stop.stdout
    stopped_at = state.step
    assert 4 <= stopped_at < 14
    ckpt = rundir.last_checkpoint(run_dir)
    assert ckpt is not None and ckpt.name == f"checkpoint-{stopped_at}"
    for part in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "adapter_model.safetensors"):
        assert (ckpt / part).exists(), part
    assert any(p.name.startswith("rng_state") for p in ckpt.iterdir())
    end = events.read_all(run_dir / "events.jsonl")[-1]
    assert end["type"] == "end" and end["status"] == "stopped" and "tunetop resume" in end["hint"]

    again = run_cli("stop", run_dir.name)
    assert again.returncode == 2 and "is not running (it is stopped)" in again.stderr

    resumed = run_cli("resume", run_dir.name)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from checkpoint-{stopped_at}" in resumed.stdout
    evs = events.read_all(run_dir / "events.jsonl")
    starts = [e for e in evs if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"] == stopped_at
    final = rundir.read_state(run_dir)
    assert final.status == "completed" and final.step == 14
    losses = step_losses(run_dir)
    assert sorted(losses) == list(range(1, 15))
    # Same data order, RNG and schedule: every step's loss equals the uninterrupted run's.
    for step in range(1, 15):
        assert losses[step] == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step

    done = run_cli("resume", run_dir.name)
    assert done.returncode == 2 and "already completed" in done.stderr


@pytest.mark.slow
def test_kill_9_shows_interrupted_and_resume_continues_from_checkpoint(home, make_profile):
    profile = make_profile("killme", {"training": {"max_steps": 14, "save_steps": 3}})
    # Paused half a second after each step (see the SIGTERM test) so the kill lands mid-run.
    assert run_cli("run", "--detach", str(profile), env={"TUNETOP_FAULT_SLOW_STEP_S": "0.5"}).returncode == 0
    run_dir = rundir.resolve("last")
    wait_until(lambda: current_step(run_dir) >= 5, timeout=240, what="step 5")
    pid = rundir.alive_pid(run_dir)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: rundir.alive_pid(run_dir) is None, timeout=30, what="the engine to die")

    listing = run_cli("ls")
    line = next(l for l in listing.stdout.splitlines() if run_dir.name in l)
    assert "interrupted" in line and "running" not in line
    assert rundir.read_state(run_dir).status == "interrupted"
    ckpt_step = int(rundir.last_checkpoint(run_dir).name.split("-")[1])
    assert ckpt_step >= 3

    resumed = run_cli("resume", run_dir.name)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    starts = [e for e in events.read_all(run_dir / "events.jsonl") if e["type"] == "start"]
    assert starts[-1]["resumed_from"] == ckpt_step
    state = rundir.read_state(run_dir)
    assert state.status == "completed" and state.step == 14
