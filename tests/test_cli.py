"""The `tunetop` command with bad input: a clear message naming the file/field/row, a hint, a non-zero
exit, and never a traceback. Run as a real subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from engine import events, rundir

from .helpers import ROOT, TINY_MODEL, run_cli


def fails(result, *needles, code=2):
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"


def test_malformed_toml(home, make_profile):
    path = make_profile("broken", text='[model]\nname_or_path = "x\n')
    fails(run_cli("run", str(path)), "broken.toml", "not valid TOML", "line 2", "hint:")


def test_unknown_key_wrong_type_and_range(home, make_profile):
    path = make_profile("bad", {"training": {"micro_bach": 4, "learning_rate": "high", "warmup_ratio": 2.0}})
    fails(run_cli("validate", str(path)), "bad.toml", 'training.micro_bach: unknown key', 'did you mean "micro_batch"',
          "training.learning_rate: expected a number", "training.warmup_ratio: expected a number from 0 to 1")


def test_inconsistent_fields(home, make_profile):
    path = make_profile("mixed", {"method": {"type": "full", "double_quant": True}})
    fails(run_cli("run", str(path)), "method.double_quant", 'method.type = "full"', 'use type = "qlora"')


def test_missing_model_path(home, make_profile, tmp_path):
    path = make_profile("nomodel", {"model": {"name_or_path": str(tmp_path / "no-such-model")}})
    fails(run_cli("run", str(path)), "model.name_or_path", "no-such-model does not exist", "hint:")
    assert not (home / "runs").exists() or not list((home / "runs").iterdir()), "a doomed run was launched"


def test_hub_id_not_in_cache_while_offline(home, make_profile, tmp_path):
    path = make_profile("offline", {"model": {"name_or_path": "meta-llama/Llama-3.1-8B"}})
    fails(run_cli("run", str(path), env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}),
          '"meta-llama/Llama-3.1-8B" is not in the Hugging Face cache', "hf download meta-llama/Llama-3.1-8B")


def test_sequence_length_beyond_context(home, make_profile):
    context = json.loads((TINY_MODEL / "config.json").read_text())["max_position_embeddings"]
    path = make_profile("long", {"training": {"max_seq_len": context * 2}})
    fails(run_cli("validate", str(path)), f"training.max_seq_len: {context * 2} is beyond the model's context "
                                          f"of {context} tokens", f"set max_seq_len to {context} or less")


def test_dataset_missing(home, make_profile, tmp_path):
    path = make_profile("nodata", {"data": {"path": str(tmp_path / "gone.jsonl")}})
    fails(run_cli("run", str(path)), "data.path", "gone.jsonl does not exist")


@pytest.mark.parametrize("content,needles", [
    ("", ["empty.jsonl: the dataset is empty"]),
    ('{"question": "q", "answer": "a"}\n', ["cannot tell the data format", "answer, question", "[data]"]),
    ('{"instruction": "a"}\n{"instruction": "b", "output": ""}\n',
     ["no usable rows in the alpaca format (0 of 2)", 'empty.jsonl:1: missing "output"',
      'empty.jsonl:2: "output" is empty']),
])
def test_dataset_empty_wrong_format_or_rows_missing_fields(home, make_profile, tmp_path, content, needles):
    data = tmp_path / "empty.jsonl"
    data.write_text(content)
    path = make_profile("d", {"data": {"path": str(data)}})
    fails(run_cli("validate", str(path)), *needles)
    # `run` launches, the engine rejects the data before loading any model, and the follower reports it.
    t0 = time.time()
    result = run_cli("run", str(path))
    fails(result, "failed:", needles[0], "hint:", code=1)
    end = events.read_all(rundir.resolve("last") / "events.jsonl")[-1]
    assert end["type"] == "end" and end["status"] == "failed" and needles[0] in end["error"]
    assert not any(e["type"] == "start" for e in events.read_all(rundir.resolve("last") / "events.jsonl"))
    assert time.time() - t0 < 60


def test_runs_root_not_writable(make_profile, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fails(run_cli("run", str(make_profile()), env={"TUNETOP_HOME": str(blocker / "home")}),
          "cannot create a run directory under", "hint: set TUNETOP_HOME")


def test_run_id_unknown_or_ambiguous(home):
    fails(run_cli("watch", "nothing"), "there are no runs under")
    for name in ("20260101-000000-a", "20260101-000001-b"):
        (home / "runs" / name).mkdir(parents=True)
        (home / "runs" / name / "run.toml").write_text("")
    fails(run_cli("logs", "2026"), '"2026" matches 2 runs', "type more of the id")
    fails(run_cli("stop", "zzz"), 'no run matches "zzz"', "tunetop ls")


def test_stop_and_resume_refuse_the_wrong_state(home):
    run = home / "runs" / "20260101-000000-done"
    run.mkdir(parents=True)
    (run / "run.toml").write_text("")
    w = events.EventWriter(run / "events.jsonl")
    w.write("start", total_steps=3)
    w.write("end", status="completed", step=3)
    w.close()
    fails(run_cli("stop", "last"), "is not running (it is completed)")
    fails(run_cli("resume", "last"), "already completed (3 steps)", "tunetop run PROFILE")


def test_unknown_profile_name(home):
    fails(run_cli("run", "no-such-profile"), 'no profile named "no-such-profile"', "known profiles:", "demo")


def test_ls_and_profiles_on_an_empty_home(home):
    result = run_cli("ls")
    assert result.returncode == 0 and "no runs yet" in result.stdout
    listing = run_cli("profiles")
    assert listing.returncode == 0 and "demo" in listing.stdout and "llama3.1-8b-qlora-24gb" in listing.stdout


def test_a_pid_without_a_verified_start_time_is_never_signalled(home):
    # A live lock holder and a pid file whose start time is missing: `stop` must not signal that pid.
    import json as _json
    import subprocess
    import sys

    from engine import runlock
    run_dir = home / "runs" / "20260101-000000-nopid"
    run_dir.mkdir(parents=True)
    (run_dir / "run.toml").write_text('name = "nopid"\n')
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    fd = runlock.acquire(run_dir)
    try:
        (run_dir / "engine.pid").write_text(_json.dumps({"pid": victim.pid, "create_time": None}))
        fails(run_cli("stop", run_dir.name), "nothing was signalled", "hint:")
        assert victim.poll() is None, "the unverified pid was signalled"
        # The events file deleted under a live engine: shown as running, and why nothing else is known.
        out = run_cli("ls")
        assert "running (events.jsonl missing)" in out.stdout, out.stdout
    finally:
        os.close(fd)
        victim.kill()
    assert "failed to start" in run_cli("ls").stdout      # no engine, no events, nothing saved


def test_validate_never_prints_valid_before_an_error(home, make_profile, tmp_path):
    # The profile parses (so the old order printed "valid"), then the data check fails.
    path = make_profile("late", {"data": {"path": str(tmp_path / "missing.jsonl")}})
    result = run_cli("validate", str(path))
    fails(result, "missing.jsonl does not exist")
    assert "valid" not in result.stdout, result.stdout


@pytest.mark.parametrize("width", [20, 40, 59, 60, 79, 80, 119, 120])
def test_progress_line_fits_the_width_in_the_documented_order(width):
    from engine.runstate import RunState
    from tuiapp.follow import progress_line
    now = time.time()
    s = RunState(run_id="r", path=None, alive=True, heartbeat_t=now)
    s.apply({"v": 1, "t": now - 60, "type": "start", "total_steps": 12000})
    for i in range(1, 40):
        s.apply({"v": 1, "t": now - 60 + i, "type": "step", "step": i, "loss": 3.1234, "lr": 2e-4,
                 "tokens_seen": i * 5000})
    full = progress_line(s)
    line = progress_line(s, width)
    assert len(line) <= width and "39/12000" in line and "ETA" in line, (width, line)
    fields = ["elapsed", "tok/s", "lr", "step/s"]          # dropped first to last
    kept = [f for f in fields if f in line]
    assert kept == fields[len(fields) - len(kept):], (width, line)   # only ever a suffix of the list survives
    if width >= len(full):
        assert line == full


def test_watch_without_a_run_prefers_the_one_training(home):
    from engine import runlock
    runs = home / "runs"
    for name, total in (("20260101-000000-older", 7), ("20260102-000000-newer", 9)):
        (runs / name).mkdir(parents=True)
        (runs / name / "run.toml").write_text('name = "w"\n')
        w = events.EventWriter(runs / name / "events.jsonl")
        w.write("start", total_steps=total)
        w.write("step", step=total, total_steps=total, loss=1.0)
        w.write("end", status="completed", step=total, total_steps=total)
        w.close()
    fd = runlock.acquire(runs / "20260101-000000-older")   # an engine is alive on the older run
    try:
        out = run_cli("watch", timeout=60)
    finally:
        os.close(fd)
    assert out.returncode == 0 and "completed: step 7/7" in out.stdout, out.stdout + out.stderr
    assert "completed: step 9/9" in run_cli("watch", timeout=60).stdout     # none alive: the newest


def test_profiles_say_which_are_bundled_and_which_shadow_one(home, tmp_path):
    mine = tmp_path / "config" / "tunetop" / "profiles"
    mine.mkdir(parents=True)
    (mine / "demo.toml").write_text((TINY_MODEL.parent.parent / "profiles" / "demo.toml").read_text()
                                    .replace("description = ", 'description = "my demo" # ', 1))
    (mine / "mine.toml").write_text((mine / "demo.toml").read_text())
    out = run_cli("profiles")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "yours, shadows bundled" in rows["demo"] and "my demo" in rows["demo"], out.stdout
    assert " yours " in rows["mine"] and "bundled" in rows["llama3.2-3b-lora"], out.stdout


# Modules `tunetop --help` and `tunetop ls` have no use for: the estimate, the data readers, reports, the
# launcher, torchrun planning, notifications, the dashboard, torch. Loading them cost --help 85 ms.
_NOT_NEEDED = ("engine.estimate", "engine.plan", "engine.data", "engine.report", "engine.launch",
               "engine.distributed", "engine.notify", "engine.userconfig", "engine.profile.preflight",
               "textual", "torch")


@pytest.mark.parametrize("argv", [["--help"], ["ls"], ["ls", "--status", "completed"]])
def test_help_and_ls_import_only_what_they_use(home, argv):
    probe = ("import sys, contextlib, io\nfrom tuiapp import cli\n"
             "with contextlib.redirect_stdout(io.StringIO()): code = cli.main(sys.argv[1:])\n"
             "print(code, ' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    code, loaded = out.split(" ", 1)
    assert code == "0"
    loaded_set = set(loaded.split())
    heavy = sorted(m for m in loaded_set if any(m == n or m.startswith(n + ".") for n in _NOT_NEEDED))
    assert heavy == [], f"`tunetop {' '.join(argv)}` loaded {heavy}"
