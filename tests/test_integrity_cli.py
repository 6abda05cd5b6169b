"""Run-directory integrity through the real CLI and real engine subprocesses on the tiny model: one engine
per run whatever the timing, hung and stalled engines seen and ended, read-only roots, huge files read
cheaply, closed pipes, and the progress line in a real terminal (tmux) at 60, 80 and 120 columns.

One long real run (module fixture) serves the terminal, pipe and stop/resume/stall/hang tests, in that
order; the races start their engines on a run folder made by hand and kill them at once.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from engine import launch, rundir
from engine.profile import load

from .helpers import ROOT, merged, toml_text, wait_until

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuiapp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **env})


def engines_on(run_dir: Path) -> list[psutil.Process]:
    """Engine processes (not their forked helpers) working on this run directory."""
    found = []
    for p in psutil.process_iter(["cmdline", "ppid"]):
        cmd = p.info["cmdline"] or []
        if "engine.train" in cmd and str(run_dir) in cmd:
            found.append(p)
    pids = {p.pid for p in found}
    return [p for p in found if p.info["ppid"] not in pids]


def kill_engines(run_dir: Path) -> None:
    for p in engines_on(run_dir):
        try:
            os.killpg(os.getpgid(p.pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    wait_until(lambda: not rundir.is_alive(run_dir), timeout=30, what="the engine to die")


def step_of(run_dir: Path) -> int:
    return rundir.read_state(run_dir).step


def no_traceback(result: subprocess.CompletedProcess) -> str:
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "Exception ignored" not in out, out
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A home with one long real run training in it (killed at the end)."""
    base = tmp_path_factory.mktemp("integrity")
    env = {"TUNETOP_HOME": str(base / "home"), "XDG_CONFIG_HOME": str(base / "config"),
           "TUNETOP_HUNG_AFTER_S": "3", "TUNETOP_STALL_MIN_S": "2"}
    profile = base / "long.toml"
    profile.write_text(toml_text(merged({"training": {"max_steps": 5000, "save_steps": 3, "micro_batch": 2,
                                                      "grad_accum": 1, "max_seq_len": 64}})))
    started = cli("run", "--detach", str(profile), env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    run_dir = rundir.list_runs(base / "home" / "runs")[0]
    try:
        wait_until(lambda: step_of(run_dir) >= 2, timeout=240, what="the first steps")
        yield {"env": env, "run": run_dir, "base": base, "profile": profile}
    finally:
        kill_engines(run_dir)


# -- the terminal -------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("columns", [60, 80, 120])
def test_watch_progress_line_fits_the_terminal(world, columns):
    if not rundir.is_alive(world["run"]):   # run after the stop tests (-k, another order): train again
        assert cli("resume", "--detach", world["run"].name, env=world["env"]).returncode == 0
        step = step_of(world["run"])
        wait_until(lambda: step_of(world["run"]) > step, timeout=240, what="the resumed run's steps")
    sock = f"tunetop-watch-{uuid.uuid4().hex[:8]}"
    envs = " ".join(f"{k}={v}" for k, v in world["env"].items())
    tmux = ["tmux", "-L", sock]
    subprocess.run(tmux + ["new-session", "-d", "-s", "w", "-x", str(columns), "-y", "12",
                           f"env {envs} PYTHONPATH={ROOT} {sys.executable} -m tuiapp watch"], check=True, timeout=30)
    try:
        def screen() -> list[str]:
            out = subprocess.run(tmux + ["capture-pane", "-p", "-t", "w"], capture_output=True, text=True, timeout=30)
            return [ln for ln in out.stdout.splitlines() if ln.strip()]

        def progress_rows() -> list[str]:
            return [ln for ln in screen() if "ETA" in ln]

        first = wait_until(progress_rows, timeout=60, what="a progress line")
        step0 = step_of(world["run"])
        wait_until(lambda: step_of(world["run"]) >= step0 + 2, timeout=60, what="two more steps")
        time.sleep(1.0)   # the watcher polls twice a second
        rows = screen()
        bars = [ln for ln in rows if "ETA" in ln]
        assert len(bars) == 1, "one progress line redrawn in place, got:\n" + "\n".join(rows)
        assert bars[0] != first[0], "the progress line did not move on"
        assert len(bars[0].rstrip()) <= columns and f"/{5000}" in bars[0], bars[0]
        assert rows.index(bars[0]) == len(rows) - 1, "the progress line wrapped onto a second row"
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=30)


# -- closed pipes ---------------------------------------------------------------------------------------

# Every subcommand's --help into a closed pipe, in one interpreter (one start-up, not one per command):
# cli.main is what the `tunetop` script calls; fd 1 is a fresh closed pipe for each command.
HELP_INTO_CLOSED_PIPES = r"""
import io, json, os, sys
from tuiapp.cli import build_parser, main
sub = next(a for a in build_parser()._actions if a.dest == "command")
results = {}
for name in [None, *sub.choices]:
    r, w = os.pipe()
    os.close(r)
    os.dup2(w, 1)
    os.close(w)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
    sys.stderr = err = io.StringIO()
    try:
        rc = main([name, "--help"] if name else ["--help"])
    except BaseException as exc:
        rc = repr(exc)
    sys.stderr = sys.__stderr__
    results[name or "tunetop"] = [rc, err.getvalue()]
print(json.dumps(results), file=sys.__stderr__)
"""


def test_every_subcommand_into_a_closed_pipe_ends_quietly(world):
    run = world["run"].name
    env = world["env"]
    helps = subprocess.run([sys.executable, "-c", HELP_INTO_CLOSED_PIPES], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, **env}, timeout=120)
    results = json.loads(helps.stderr.strip().splitlines()[-1])
    assert {"run", "ls", "watch", "stop", "resume", "logs", "validate", "merge", "profiles"} <= set(results)
    for name, (rc, err) in results.items():
        assert rc in (0, 141) and not err, (name, rc, err)
    # The real output of the commands that print most, each a real `tunetop` process, all at once.
    commands = [["ls"], ["logs", run], ["logs", "-n", "5", run], ["watch", run], ["profiles"],
                ["validate", str(world["profile"])], ["fit", "--gpu", "4090"]]
    procs = []
    for args in commands:
        r, w = os.pipe()
        os.close(r)                     # the reader is gone before the first write
        procs.append((args, subprocess.Popen([sys.executable, "-m", "tuiapp", *args], stdout=w,
                                             stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, **env},
                                             text=True)))
        os.close(w)
    for args, proc in procs:
        _, err = proc.communicate(timeout=180)
        assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, (args, err)
        assert proc.returncode in (0, 141), (args, proc.returncode, err)


# -- stop, resume, stalled, hung, force -------------------------------------------------------------------

def test_stop_followed_at_once_by_resume_never_starts_a_second_engine(world):
    run_dir, env = world["run"], world["env"]
    assert len(engines_on(run_dir)) == 1
    stop = cli("stop", run_dir.name, env=env)
    resume = cli("resume", "--detach", run_dir.name, env=env)
    out = no_traceback(resume)
    if resume.returncode != 0:   # the engine was still finishing its step / checkpoint: refused, clearly
        assert resume.returncode == 2 and f"run {run_dir.name} is already running" in out and "hint:" in out, out
    assert stop.returncode == 0, stop.stderr
    assert len(engines_on(run_dir)) <= 1
    waited = cli("stop", "--wait", run_dir.name, env=env) if rundir.is_alive(run_dir) else None
    if waited is not None:
        assert waited.returncode in (0, 2), waited.stderr   # 2: it exited between is_alive and the stop
    wait_until(lambda: not rundir.is_alive(run_dir), timeout=120, what="the stop")
    assert rundir.read_state(run_dir).status == "stopped"


def test_slowed_step_is_stalled_sigstop_is_hung_and_force_stop_interrupts(world):
    run_dir, env = world["run"], world["env"]
    if rundir.is_alive(run_dir):     # run alone (-k): the stop test has not stopped the fixture's engine
        assert cli("stop", "--wait", run_dir.name, env=env).returncode == 0
    ckpt = rundir.last_checkpoint(run_dir)
    at = int(ckpt.name.split("-")[1]) + 3 if ckpt else 3
    # The resumed engine sleeps 600 s at the end of step `at`: its heartbeat goes on, its steps do not.
    slow_env = {**env, "TUNETOP_FAULT_SLOW_STEP_S": f"600@{at}"}
    resumed = cli("resume", "--detach", run_dir.name, env=slow_env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(engines_on(run_dir)) == 1

    def ls_status() -> str:
        out = cli("ls", env=env)
        assert out.returncode == 0, out.stderr
        return next(ln for ln in out.stdout.splitlines() if ln.startswith(run_dir.name))

    seen = []

    def stalled() -> bool:
        seen.append(ls_status())
        return "stalled" in seen[-1]

    try:
        wait_until(stalled, timeout=300, interval=1.0, what="ls to show stalled")
    except AssertionError:
        tail = (run_dir / "events.jsonl").read_text()[-3000:]
        raise AssertionError(f"ls said {seen[-3:]}; at={at}; events tail:\n{tail}") from None
    assert "no step for" in ls_status()

    pid = rundir.alive_pid(run_dir)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)         # a frozen process: the heartbeat thread stops too
    try:
        wait_until(lambda: "hung" in ls_status(), timeout=60, interval=1.0, what="ls to show hung")
        t0 = time.monotonic()
        waited = cli("stop", "--wait", "--timeout", "2", run_dir.name, env=env)
        took = time.monotonic() - t0
        out = no_traceback(waited)
        assert waited.returncode == 1 and "still alive after 2 s" in out and "hung" in out, out
        assert "stop --force" in out and took < 30, (took, out)

        forced = cli("stop", "--force", "--grace", "1", run_dir.name, env=env)
        out = no_traceback(forced)
        assert forced.returncode == 0 and "SIGKILL" in out and "interrupted" in out, out
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert not engines_on(run_dir) and not rundir.is_alive(run_dir)
    state = rundir.read_state(run_dir)
    assert state.status == "interrupted" and rundir.last_checkpoint(run_dir) is not None
    assert f"tunetop resume {run_dir.name}" in cli("stop", run_dir.name, env=env).stderr   # resumable, it says


# -- races ----------------------------------------------------------------------------------------------------

@pytest.fixture
def idle_run(tmp_path):
    """A run folder with no engine and nothing trained (what resume finds after a failed start)."""
    env = {"TUNETOP_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    profile = tmp_path / "race.toml"
    profile.write_text(toml_text(merged({"training": {"max_steps": 5000}})))
    run_dir = rundir.create(load(profile), tmp_path / "home" / "runs")
    yield run_dir, env
    kill_engines(run_dir)


def test_two_resumes_released_at_the_same_instant_start_one_engine(idle_run):
    run_dir, env = idle_run
    barrier = threading.Barrier(2)
    results = []

    def resume_via_cli():
        barrier.wait()
        results.append(cli("resume", "--detach", str(run_dir), env=env))

    threads = [threading.Thread(target=resume_via_cli) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stdout + r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 2)
    assert f"error: run {run_dir.name} is already running" in loser.stderr and "hint:" in loser.stderr
    no_traceback(loser)
    time.sleep(0.5)
    assert len(engines_on(run_dir)) == 1


def test_two_resumes_in_one_process_at_the_same_instant_start_one_engine(idle_run):
    # Threads meet at a barrier right before launch.resume: the lock calls race within microseconds.
    run_dir, _ = idle_run
    barrier = threading.Barrier(4)
    outcomes = []

    def go():
        barrier.wait()
        try:
            launch.resume(run_dir)
            outcomes.append("started")
        except rundir.RunError as exc:
            outcomes.append(exc.message)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("started") == 1, outcomes
    assert all("already running" in o for o in outcomes if o != "started")
    time.sleep(0.5)
    assert len(engines_on(run_dir)) == 1


# -- read-only runs root -------------------------------------------------------------------------------------

def test_read_only_runs_root_is_a_clear_error(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        env = {"TUNETOP_HOME": str(mnt / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
        profile = tmp_path / "ro.toml"
        profile.write_text(toml_text(merged({})))
        run_dir = rundir.create(load(profile), mnt / "home" / "runs")
        assert run_dir.stat().st_mode & 0o777 == 0o700        # private by default
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        for args in (["resume", run_dir.name], ["run", str(profile)]):
            out = cli(*args, env=env)
            text = no_traceback(out)
            assert out.returncode == 2 and "error:" in text and "read-only" in text and "hint:" in text, text
        assert not engines_on(run_dir)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# -- huge files -------------------------------------------------------------------------------------------

def _sparse_run(root: Path) -> Path:
    """A completed run whose events.jsonl and engine.log are 1 GiB each (sparse: a hole in the middle)."""
    run_dir = root / "20260101-000000-huge"
    run_dir.mkdir(parents=True)
    (run_dir / "run.toml").write_text('name = "huge"\n')
    t0 = time.time() - 7200
    with open(run_dir / "events.jsonl", "wb") as f:
        f.write((json.dumps({"v": 1, "t": t0, "type": "start", "profile": "huge", "model": "m", "method": "lora",
                             "total_steps": 1_000_000}) + "\n").encode())
        f.truncate(1 << 30)
        f.seek(1 << 30)
        f.write(b"\n")
        for i in range(50):
            f.write((json.dumps({"v": 1, "t": t0 + 3600 + i, "type": "step", "step": 999_950 + i, "loss": 0.5,
                                 "total_steps": 1_000_000}) + "\n").encode())
        f.write((json.dumps({"v": 1, "t": t0 + 3650, "type": "end", "status": "completed",
                             "step": 999_999}) + "\n").encode())
    with open(run_dir / "engine.log", "wb") as f:
        f.truncate(1 << 30)
        f.seek(1 << 30)
        f.write(b"".join(f"log line {i}\n".encode() for i in range(20)))
    return run_dir


def test_one_gigabyte_events_file_and_log_answer_in_under_a_second(tmp_path):
    env = {"TUNETOP_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    run_dir = _sparse_run(tmp_path / "home" / "runs")
    try:
        # Measured inside a fresh interpreter: the command's own time and peak memory, start-up aside.
        # Peak memory is VmHWM of this process image: ru_maxrss survives execve, so it would report the
        # (large) pytest worker that forked the probe rather than the command.
        probe = ("import re, sys, time; from tuiapp.cli import main; t = time.perf_counter(); "
                 "rc = main(sys.argv[1:]); took = time.perf_counter() - t; "
                 "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
                 "print('PROBE', rc, took, hwm, file=sys.stderr)")
        for args, needle in ((["ls"], "completed"), (["logs", "-n", "3", run_dir.name], "log line 19"),
                             (["watch", run_dir.name], "completed")):
            out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60,
                                 cwd=ROOT, env={**os.environ, **env})
            assert needle in out.stdout, (args, out.stdout, out.stderr)
            _, rc, took, rss_kib = out.stderr.strip().splitlines()[-1].split()
            assert float(took) < 1.0, (args, took)
            assert int(rss_kib) < 200 * 1024, (args, rss_kib)
        ls = cli("ls", env=env).stdout
        assert "999999/1000000" in ls and "1:00:50" in ls, ls   # the tail's step and the training time
    finally:
        shutil.rmtree(run_dir)


def test_logs_does_not_follow_a_symlink_out_of_the_run_directory(tmp_path):
    env = {"TUNETOP_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    run_dir = tmp_path / "home" / "runs" / "20260101-000000-link"
    run_dir.mkdir(parents=True)
    (run_dir / "run.toml").write_text('name = "link"\n')
    secret = tmp_path / "secret.txt"
    secret.write_text("do not print me\n")
    (run_dir / "engine.log").symlink_to(secret)
    out = cli("logs", run_dir.name, env=env)
    text = no_traceback(out)
    assert out.returncode == 2 and "do not print me" not in text and "symbolic link" in text, text
    (run_dir / "engine.log").unlink()
    os.mkfifo(run_dir / "engine.log")      # a FIFO must not hang `logs`
    out = cli("logs", "-n", "5", run_dir.name, env=env, timeout=30)
    assert out.returncode == 2 and "not a regular file" in no_traceback(out)
