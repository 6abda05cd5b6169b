"""The dashboard in a real terminal (tmux): training survives the terminal going away (an SSH drop), and
a new `tunetop` reattaches to the same run with its history."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from engine import rundir

from .helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]

TUNETOP = str(Path(sys.executable).parent / "tunetop")


class Tmux:
    def __init__(self, env: dict):
        self.sock = f"tunetop-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=30)
        if check and out.returncode:
            raise AssertionError(f"tmux {args}: {out.stderr}")
        return out.stdout

    def start_dashboard(self, name: str) -> int:
        envs = " ".join(f"{k}={v}" for k, v in self.env.items())
        self("new-session", "-d", "-s", name, "-x", "120", "-y", "40", f"env {envs} {TUNETOP}")
        return int(self("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-t", name, check=False)

    def kill_server(self) -> None:
        self("kill-server", check=False)

    def remove_socket(self) -> None:
        folder = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (folder / self.sock).unlink(missing_ok=True)


def _step(text: str, run_id: str) -> int:
    m = re.search(re.escape(run_id) + r".*?(\d+)/(\d+)", text)
    return int(m.group(1)) if m else -1


def test_runs_survive_the_terminal_and_tunetop_reattaches(tmp_path, make_profile):
    # Long enough to still be training when `q` is pressed on a fast, quiet machine (the test stops it).
    profile = make_profile("e2e", {"training": {"max_steps": 20000, "save_steps": 100000}})
    env = {"TUNETOP_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "TERM": "xterm-256color", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    tmux = Tmux(env)
    run_dir = None
    try:
        first = tmux.start_dashboard("first")
        wait_until(lambda: "runs (0)" in tmux.screen("first"), 60, what="the dashboard's first frame")

        out = subprocess.run([TUNETOP, "run", str(profile), "-d"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env})
        assert out.returncode == 0, out.stderr
        run_id = re.search(r"run (\S+) started", out.stdout).group(1)
        run_dir = tmp_path / "home" / "runs" / run_id

        # It shows up on its own, running, and its step count moves on screen.
        wait_until(lambda: run_id in tmux.screen("first") and "running" in tmux.screen("first"), 120,
                 what="the run on screen")
        wait_until(lambda: _step(tmux.screen("first"), run_id) >= 2, 300, what="progress on screen")
        seen_before = _step(tmux.screen("first"), run_id)

        # The SSH drop: the terminal and everything attached to it go away.
        tmux.kill_server()
        wait_until(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE,
                 30, what="the first dashboard to exit")
        assert rundir.alive_pid(run_dir) is not None, "the engine died with the terminal"
        grew_from = (run_dir / rundir.EVENTS).stat().st_size
        wait_until(lambda: (run_dir / rundir.EVENTS).stat().st_size > grew_from, 120, what="training to go on")

        # A new terminal, a new tunetop: the same run, live, with its earlier history.
        tmux.start_dashboard("second")
        wait_until(lambda: run_id in tmux.screen("second") and "running" in tmux.screen("second"), 60,
                 what="the run after reattaching")
        wait_until(lambda: _step(tmux.screen("second"), run_id) > seen_before, 300, what="progress after reattach")
        text = tmux.screen("second")
        assert any(0x2800 < ord(c) <= 0x28FF for c in text), "the loss chart (history) is not drawn:\n" + text
        assert "step 0 … 20000" in text

        # q quits at once, says the run goes on, and leaves it training.
        second = int(tmux("display-message", "-p", "-t", "second", "#{pane_pid}").strip())
        tmux("set-option", "-t", "second", "remain-on-exit", "on")
        tmux("send-keys", "-t", "second", "q")
        try:
            wait_until(lambda: "1 run still training" in tmux.screen("second"), 30, what="the quit note")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the terminal shows:\n{tmux.screen('second')}") from None
        wait_until(lambda: not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE,
                 10, what="the dashboard to exit after q")
        assert rundir.alive_pid(run_dir) is not None
    finally:
        tmux.kill_server()
        tmux.remove_socket()
        if run_dir is not None:
            pid = rundir.alive_pid(run_dir)
            if pid:
                os.kill(pid, signal.SIGTERM)
                try:
                    psutil.Process(pid).wait(60)
                except (psutil.TimeoutExpired, psutil.NoSuchProcess):
                    if rundir.alive_pid(run_dir):
                        os.kill(pid, signal.SIGKILL)


def _field(text: str, key: str) -> str | None:
    m = re.search(r"│ " + re.escape(key) + r" +(\S*)", text)
    return m.group(1) if m else None


def test_builder_takes_key_bursts_in_order_in_a_real_terminal(tmp_path):
    # Keys that arrive together (SSH, a paste of keystrokes) used to be reordered: bound keys (End, Backspace,
    # Tab) ran after the letters typed behind them. Each send-keys below delivers its keys in one write.
    env = {"TUNETOP_HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "TERM": "xterm-256color", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    tmux = Tmux(env)
    try:
        tmux.start_dashboard("b")
        wait_until(lambda: "runs (0)" in tmux.screen("b"), 60, what="the dashboard's first frame")
        tmux("send-keys", "-t", "b", "n")
        wait_until(lambda: _field(tmux.screen("b"), "revision") == "main", 60, what="the builder")
        # A text field: tab to it, clear it and type, all in one burst; then edit it in another.
        tmux("send-keys", "-t", "b", "Tab", "Tab", "Tab", "End", "C-u", *"v1.23")
        wait_until(lambda: _field(tmux.screen("b"), "revision") == "v1.23", 30, what="v1.23 in revision")
        tmux("send-keys", "-t", "b", "End", *["BSpace"] * 5, *"xyz")
        wait_until(lambda: _field(tmux.screen("b"), "revision") == "xyz", 30,
                 what=f"xyz in revision (screen: {_field(tmux.screen('b'), 'revision')!r})")
        # A number field further down (demo is a LoRA profile), reached by tab inside the burst.
        from engine.profile.schema import SECTIONS
        from tuiapp.builder.form import TOP, fields_of
        shown = [k for sec in (TOP, *SECTIONS) for k, meta in fields_of(sec)
                 if not meta["methods"] or "lora" in meta["methods"]]
        tabs = shown.index("learning_rate") - shown.index("revision")
        tmux("send-keys", "-t", "b", *["Tab"] * tabs, "End", "C-u", *"0.003")
        wait_until(lambda: _field(tmux.screen("b"), "learning_rate") == "0.003", 30, what="0.003 in learning_rate")
        tmux("send-keys", "-t", "b", "End", *["BSpace"] * 5, *"0.01")
        wait_until(lambda: _field(tmux.screen("b"), "learning_rate") == "0.01", 30,
                 what=f"0.01 in learning_rate (screen: {_field(tmux.screen('b'), 'learning_rate')!r})")
    finally:
        tmux.kill_server()
        tmux.remove_socket()
