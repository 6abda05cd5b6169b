"""Nothing lost, ever: real engine processes on the tiny model, killed, starved of disk, robbed of their
run directory, fed changed data, and resumed.

The fault hooks (TUNETOP_FAULT_KILL_AT, _ENOSPC_AT, _SLOW_STEP_S) are documented in engine/train/faults.py.
One run directory goes through a chain of kills (one engine process per kill point, each resuming the
last), so the whole chain costs what a handful of short runs cost; the other tests work on copies of the
finished chain. Profile: 4 steps, a checkpoint every 2, 40 rows.

A kill leaves one of two states per save: a staging folder (any point before the rename) or a renamed
folder without its marker; the default chain kills once in each state of a checkpoint and of the final
save. Set TUNETOP_FAULTS_ALL_POINTS=1 to kill at every point of faults.py instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import checkpoints as ck
from engine import rundir, runlock

from .backoff_helpers import adapter_weights, dump, engine_env, new_run, read_events, run_engine
from .helpers import DATA, TINY_MODEL, merged, toml_text, wait_until

pytestmark = pytest.mark.slow

STEPS, SAVE = 4, 2
ALL = os.environ.get("TUNETOP_FAULTS_ALL_POINTS") == "1"
CHECKPOINT_POINTS = (["model", "optimizer", "rng", "trainer_state", "backoff", "before_rename", "before_marker"]
                     if ALL else ["trainer_state", "before_marker"])
OUTPUT_POINTS = ["model", "tokenizer", "before_rename", "done"] if ALL else ["model", "done"]


def write_profile(tmp: Path, data: Path, **training) -> Path:
    over = {"data": {"path": str(data), "max_samples": 40},
            "training": {"max_steps": STEPS, "save_steps": SAVE, "save_total_limit": 2, "seed": 3, **training}}
    path = tmp / "faults.toml"
    path.write_text(toml_text(merged(over)))
    return path


def steps_of(evs) -> list[int]:
    return [e["step"] for e in evs if e["type"] == "step"]


def complete(run_dir: Path) -> list[str]:
    return [c.name for c in ck.candidates(run_dir / "checkpoints") if ck.is_complete(c)]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A run never disturbed: the reference, and the source of copies for the merge test."""
    tmp = tmp_path_factory.mktemp("faults")
    data = tmp / "messages.jsonl"
    shutil.copy(DATA / "messages.jsonl", data)
    profile = write_profile(tmp, data)
    home = tmp / "home"
    reference = new_run(profile, home)
    assert run_engine(reference, engine_env(home)).returncode == 0
    return {"tmp": tmp, "home": home, "data": data, "profile": profile, "reference": reference, "run": reference}


@pytest.fixture(scope="module")
def chain(clean):
    """One run directory killed at every chosen point in turn, each engine resuming the last."""
    tmp, home, data, profile, reference = (clean[k] for k in ("tmp", "home", "data", "profile", "reference"))
    run_dir = new_run(profile, home)
    seen = []
    resume = False
    points = [f"checkpoint:{p}@{SAVE}" for p in CHECKPOINT_POINTS] + [f"output:{p}" for p in OUTPUT_POINTS]
    for point in points:
        before = len(read_events(run_dir)) if (run_dir / "events.jsonl").exists() else 0
        result = run_engine(run_dir, engine_env(home, TUNETOP_FAULT_KILL_AT=point), resume=resume)
        evs = read_events(run_dir)[before:]
        unmarked = [c.name for c in ck.candidates(run_dir / "checkpoints") if not ck.is_complete(c)]
        seen.append({"point": point, "rc": result.returncode, "events": evs, "complete": complete(run_dir),
                     "unmarked": unmarked,
                     "staging": sorted(p.name for p in (run_dir / "checkpoints").glob(".tmp-*")),
                     "status": rundir.read_state(run_dir).status, "last": rundir.last_checkpoint(run_dir),
                     "stderr": result.stderr[-2000:], "outputs": sorted(p.name for p in run_dir.iterdir()
                                                                           if p.name in ("adapter", ".tmp-adapter"))})
        resume = True
    before = len(read_events(run_dir))
    final = run_engine(run_dir, engine_env(home), resume=True)
    return {"tmp": tmp, "home": home, "data": data, "profile": profile, "reference": reference,
            "run": run_dir, "seen": seen, "final": final, "final_events": read_events(run_dir)[before:]}


def test_a_kill_inside_a_checkpoint_never_leaves_a_resumable_half(chain):
    for s in chain["seen"]:
        if not s["point"].startswith("checkpoint:"):
            continue
        print(f"  killed at {s['point']}: exit {s['rc']}, complete {s['complete']}, staging {s['staging']}, "
              f"ls says {s['status']}")
        assert s["rc"] == -signal.SIGKILL, s["stderr"]
        assert not [e for e in s["events"] if e["type"] == "end"]
        assert s["status"] == "interrupted"
        assert s["complete"] == [] and s["last"] is None, "a killed save must not count as a checkpoint"
        # Every start after the first restarts from step 0: there was nothing complete to resume.
        starts = [e for e in s["events"] if e["type"] == "start"]
        assert starts and starts[-1].get("resumed_from") is None
        assert steps_of(s["events"]) == [1, 2]
        if "before_marker" in s["point"]:
            assert s["unmarked"] == [f"checkpoint-{SAVE}"] and s["staging"] == []   # renamed, no marker
        else:
            assert s["staging"] == [f".tmp-checkpoint-{SAVE}"] and s["unmarked"] == []
    # The next start said why the leftover was not used.
    later = chain["seen"][len(CHECKPOINT_POINTS)]["events"]
    assert any("checkpoint-2/COMPLETE is missing" in e.get("message", "") for e in later if e["type"] == "log")


def test_a_kill_during_the_final_save_resumes_without_training_a_step(chain):
    outputs = [s for s in chain["seen"] if s["point"].startswith("output:")]
    first = outputs[0]
    assert steps_of(first["events"]) == [1, 2, 3, 4], dump(first["events"])   # nothing complete before it
    for s in outputs:
        print(f"  killed at {s['point']}: complete {s['complete']}, outputs {s['outputs']}, ls says {s['status']}")
        assert s["rc"] == -signal.SIGKILL and not [e for e in s["events"] if e["type"] == "end"]
        assert s["complete"] == ["checkpoint-4", "checkpoint-2"]
        if s["point"] != "output:done":
            assert "adapter" not in s["outputs"], "no half-written adapter/ under its real name"
            assert s["status"] == "interrupted"
        else:   # killed after the rename: the output is whole, so readers may call the run completed
            assert "adapter" in s["outputs"] and s["status"] in ("interrupted", "completed")
    for s in outputs[1:]:
        assert steps_of(s["events"]) == [], "resuming after the final checkpoint trains no step"
    evs = chain["final_events"]
    assert chain["final"].returncode == 0, chain["final"].stderr[-3000:]
    assert steps_of(evs) == [] and evs[-1]["type"] == "end" and evs[-1]["status"] == "completed"
    assert evs[-1]["step"] == STEPS and not (chain["run"] / ".tmp-adapter").exists()
    assert any("final step" in e.get("message", "") for e in evs if e["type"] == "log")
    assert rundir.read_state(chain["run"]).status == "completed"
    # The same training as a run never killed, and an adapter that loads.
    a, b = adapter_weights(chain["reference"]), adapter_weights(chain["run"])
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"  adapter after the kill chain vs a clean run: max |difference| = {diff:.3e}")
    assert diff < 1e-5
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY_MODEL), chain["run"] / "adapter")


def copy_run(chain, name: str) -> Path:
    dst = chain["home"] / "runs" / f"{chain['run'].name}-{name}"
    shutil.copytree(chain["run"], dst)
    return dst


def test_a_broken_checkpoint_falls_back_and_a_missing_optimizer_is_an_error(chain):
    run_dir = copy_run(chain, "broken")
    (run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "log_hi')
    before = len(read_events(run_dir))
    result = run_engine(run_dir, engine_env(chain["home"]), resume=True)
    assert result.returncode == 0, result.stderr[-3000:]
    evs = read_events(run_dir)[before:]
    warning = next(e["message"] for e in evs if e["type"] == "log" and e["level"] == "warning")
    print(f"  warning: {warning}")
    assert "checkpoint-4/trainer_state.json" in warning and "falling back" in warning
    assert next(e for e in evs if e["type"] == "start")["resumed_from"] == 2
    assert steps_of(evs) == [3, 4] and evs[-1]["status"] == "completed"

    (run_dir / "checkpoints" / "checkpoint-4" / "optimizer.pt").unlink()
    before = len(read_events(run_dir))
    result = run_engine(run_dir, engine_env(chain["home"]), resume=True)
    evs = read_events(run_dir)[before:]
    print(f"  exit {result.returncode}: {evs[-1].get('error')}\n  hint: {evs[-1].get('hint')}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert evs[-1]["status"] == "failed" and "checkpoint-4/optimizer.pt is missing" in evs[-1]["error"]
    assert "--reset-optimizer" in evs[-1]["hint"] and not steps_of(evs)

    before = len(read_events(run_dir))
    result = subprocess.run([sys.executable, "-m", "engine.train", str(run_dir), "--resume", "--reset-optimizer"],
                            cwd=run_dir, env=engine_env(chain["home"]), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    evs = read_events(run_dir)[before:]
    assert any("fresh optimizer" in e.get("message", "") for e in evs if e["type"] == "log")
    assert evs[-1]["status"] == "completed"


def test_changed_data_is_refused_unless_accepted(chain):
    run_dir = copy_run(chain, "data")
    original = chain["data"].read_bytes()
    try:
        with open(chain["data"], "ab") as f:
            f.write(original.splitlines(keepends=True)[0])
        before = len(read_events(run_dir))
        result = run_engine(run_dir, engine_env(chain["home"]), resume=True)
        evs = read_events(run_dir)[before:]
        print(f"  refused: {evs[-1].get('error')}")
        assert result.returncode == 2 and evs[-1]["status"] == "failed"
        assert str(chain["data"]) in evs[-1]["error"] and "changed" in evs[-1]["error"]
        assert "--accept-changed-data" in evs[-1]["hint"] and not [e for e in evs if e["type"] == "start"]

        result = subprocess.run([sys.executable, "-m", "engine.train", str(run_dir), "--resume",
                                 "--accept-changed-data"], cwd=run_dir, env=engine_env(chain["home"]),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        evs = read_events(run_dir)[before:]
        warning = [e["message"] for e in evs if e["type"] == "log" and "--accept-changed-data" in e["message"]]
        assert warning and str(chain["data"]) in warning[0]
        assert evs[-1]["status"] == "completed"
    finally:
        chain["data"].write_bytes(original)


def test_an_engine_without_the_lock_writes_nothing(chain):
    run_dir = copy_run(chain, "locked")
    events_before = (run_dir / "events.jsonl").read_bytes()
    fd = runlock.acquire(run_dir)
    try:
        result = run_engine(run_dir, engine_env(chain["home"]), resume=True, timeout=120)
    finally:
        os.close(fd)
    print(f"  exit {result.returncode}: {result.stderr.strip()}")
    assert result.returncode == 4 and "another engine is running" in result.stderr
    assert (run_dir / "events.jsonl").read_bytes() == events_before


def test_enospc_during_a_checkpoint_fails_clearly_and_keeps_the_previous_one(chain, tmp_path):
    home = tmp_path / "home"
    run_dir = new_run(chain["profile"], home)
    result = run_engine(run_dir, engine_env(home, TUNETOP_FAULT_ENOSPC_AT="checkpoint:optimizer@4"))
    evs = read_events(run_dir)
    end = evs[-1]
    print(f"  exit {result.returncode}: {end.get('error')}\n  hint: {end.get('hint')}")
    assert result.returncode == 1 and end["type"] == "end" and end["status"] == "failed"
    mount = str(ck.mount_point(run_dir))
    assert "no space left on" in end["error"] and mount in end["error"] and "checkpoint-4" in end["error"]
    assert "needs about" in end["error"] and "free" in end["error"]
    assert complete(run_dir) == ["checkpoint-2"] and ck.last_checkpoint(run_dir).name == "checkpoint-2"
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_real_full_disk_ends_failed_with_the_end_event_recorded(chain, tmp_path):
    """A small tmpfs, filled by another process once the first checkpoint is written."""
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "12m"):
        pytest.skip("needs root and a mountable tmpfs (the ENOSPC hook test covers the rest)")
    try:
        home = disk / "home"
        run_dir = new_run(chain["profile"], home)
        proc = subprocess.Popen([sys.executable, "-m", "engine.train", str(run_dir)], cwd=tmp_path,
                                env=engine_env(home, TUNETOP_FAULT_SLOW_STEP_S="1"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: complete(run_dir) == ["checkpoint-2"], timeout=300, interval=0.1, what="checkpoint-2")
            free = shutil.disk_usage(disk).free
            with open(disk / "filler", "wb") as f:   # leave 64 KiB: a few events, not a checkpoint
                os.posix_fallocate(f.fileno(), 0, max(0, free - (64 << 10)))
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        end = read_events(run_dir)[-1]
        print(f"  exit {proc.returncode}: {end.get('error')}")
        assert proc.returncode == 1, out[-3000:]
        assert end["type"] == "end" and end["status"] == "failed"
        assert f"no space left on {disk}" in end["error"] and "checkpoint-4" in end["error"]
        assert complete(run_dir) == ["checkpoint-2"] and ck.last_checkpoint(run_dir).name == "checkpoint-2"
        assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_deleted_run_directory_stops_the_engine_and_is_not_recreated(chain, tmp_path):
    home = tmp_path / "home"
    # No checkpoint in this run (save_steps beyond max_steps): the deletion lands between steps.
    run_dir = new_run(write_profile(tmp_path, chain["data"], save_steps=100), home)
    env = engine_env(home, TUNETOP_FAULT_SLOW_STEP_S="1.5")
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", str(run_dir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: steps_of(read_events(run_dir)), timeout=300, what="step 1")
        beat = os.stat(run_dir / "heartbeat").st_mtime
        wait_until(lambda: os.stat(run_dir / "heartbeat").st_mtime > beat, timeout=10, interval=0.5,
                 what="the heartbeat to move on")
        shutil.rmtree(run_dir)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"  exit {proc.returncode}: {out.strip().splitlines()[-1]}")
    assert proc.returncode == 1 and "deleted or moved" in out
    assert not run_dir.exists() and sorted(p.name for p in (home / "runs").iterdir()) == []


def merge(run_dir: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.train.merge", str(run_dir)], cwd=run_dir, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_failed_merge_leaves_no_merged_folder_and_says_why(clean):
    chain = clean
    env = engine_env(chain["home"])
    cut = copy_run(chain, "cut-adapter")
    weights = cut / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_base = copy_run(chain, "no-base")
    toml = no_base / "run.toml"
    toml.write_text(toml.read_text().replace(str(TINY_MODEL), str(chain["tmp"] / "gone-model")))
    full = copy_run(chain, "full-disk")
    cases = [(cut, env, "adapter_model.safetensors is truncated"),
             (no_base, env, f"the base model {chain['tmp'] / 'gone-model'} is missing"),
             (full, engine_env(chain["home"], TUNETOP_FAULT_ENOSPC_AT="merge:before_rename"), "no space left on")]
    for run_dir, run_env, expected in cases:
        result = merge(run_dir, run_env)
        print(f"  {run_dir.name}: exit {result.returncode}: {result.stderr.strip().splitlines()[-2:]}")
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
        assert not (run_dir / "merged").exists() and not (run_dir / ".tmp-merged").exists()
