"""Delivery: a queue and one background thread, so that no endpoint can slow or break training.

The training loop only puts notices on a queue (EventWriter calls `Notifier.on_event` after each line).
A daemon thread takes them one by one and hands each channel (every apprise URL on its own, and the
command hook) to a short-lived thread that it waits on for at most `timeout_s`. A channel that fails or
hangs costs a `log` warning event that names it redacted (`ntfy://***`), never the training step.
When the event stream closes (the run ends or relaunches itself), `flush` waits for what is queued, at
most timeout_s per notice, so the `end` message goes out before the process exits.
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..userconfig import NotifyConfig, redact
from .rules import Notice, Rules

FLUSH_CAP_S = 120.0   # the longest the engine's exit waits for queued notices


class Notifier:
    def __init__(self, cfg: NotifyConfig, run_dir: Path, writer=None, history: list | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.writer = writer
        self.rules = Rules(self.run_dir.name, cfg.eval_rising)
        self.rules.prime(history or [])
        self.sent: list[tuple[str, str]] = []          # (event, channel) delivered: for tests and the log
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="tunetop-notify", daemon=True)
        self._thread.start()
        _quiet_apprise()

    # -- called from the training thread: must be quick and never raise ------------------------------------

    def on_event(self, event: dict) -> None:
        try:
            notice = self.rules.feed(event)
        except Exception:  # noqa: BLE001 - a bad event must never reach the training loop
            return
        if notice is not None and notice.matches(self.cfg.on):
            self._queue.put(notice)

    def flush(self) -> None:
        """Wait for queued notices (each channel at most timeout_s), bounded by FLUSH_CAP_S."""
        deadline = time.monotonic() + min(FLUSH_CAP_S, self.cfg.timeout_s * (self._queue.qsize() + 2) + 1)
        # unfinished_tasks counts a notice from put() until its delivery is over (no window between get and work).
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- the delivery thread ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            notice = self._queue.get()
            try:
                self._deliver(notice)
            except Exception as exc:  # noqa: BLE001 - keep delivering the next ones
                self._warn(f"notification ({notice.event}) could not be prepared: {type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _deliver(self, notice: Notice) -> None:
        attach = self._report(notice) if notice.event in ("completed", "failed", "stopped") else None
        if attach is not None:
            notice.fields["report"] = str(attach)
        jobs = [(redact(url), lambda url=url: _send_apprise(url, notice, attach, self.cfg.timeout_s))
                for url in self.cfg.urls]
        if self.cfg.command:
            jobs.append((f"command {self.cfg.command[0]}",
                         lambda: _run_command(self.cfg.command, notice, self.run_dir, self.cfg.timeout_s)))
        threads = []
        for name, job in jobs:
            box: dict = {}
            t = threading.Thread(target=_capture, args=(job, box), name=f"notify {name}", daemon=True)
            t.start()
            threads.append((name, t, box))
        deadline = time.monotonic() + self.cfg.timeout_s
        for name, t, box in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self._warn(f"notification ({notice.event}) to {name} timed out after {self.cfg.timeout_s:g} s; "
                           "training is not affected")
            elif box.get("error"):
                self._warn(f"notification ({notice.event}) to {name} failed: {box['error']}")
            else:
                self.sent.append((notice.event, name))

    def _report(self, notice: Notice) -> Path | None:
        if not self.cfg.attach_report or self.rules.step is None:   # no step: nothing to chart
            return None
        try:
            from ..report import write_report
            return write_report(self.run_dir, self.run_dir / "report.html", "html")
        except Exception as exc:  # noqa: BLE001 - the message goes out without its attachment
            self._warn(f"the run report could not be written for the {notice.event} message: {exc}")
            return None

    def _warn(self, message: str) -> None:
        if self.writer is None:    # `tunetop notify` (no run): say it on the terminal
            print(f"warning: {message}", file=sys.stderr)
            return
        if self.writer is not None:
            try:
                self.writer.write("log", level="warning", message=message, code="notify_failed")
            except (OSError, ValueError):
                pass


def _capture(job, box: dict) -> None:
    try:
        error = job()
    except Exception as exc:  # noqa: BLE001
        error = f"{type(exc).__name__}: {exc}"
    if error:
        box["error"] = error


def _send_apprise(url: str, notice: Notice, attach: Path | None, timeout_s: float) -> str | None:
    import apprise
    apobj = apprise.Apprise()
    if not apobj.add(url):
        return "apprise does not understand this URL"
    kind = {"warning": apprise.NotifyType.WARNING, "error": apprise.NotifyType.FAILURE}.get(
        notice.level, apprise.NotifyType.INFO)
    server = apobj[0]
    # Socket timeouts below our own, so a hung server also frees its thread.
    for attr in ("socket_connect_timeout", "socket_read_timeout"):
        if hasattr(server, attr):
            setattr(server, attr, timeout_s)
    with_file = attach is not None and getattr(server, "attachment_support", False)
    ok = apobj.notify(body=notice.body, title=notice.title, notify_type=kind,
                      attach=str(attach) if with_file else None)
    return None if ok else "the service refused it or could not be reached"


def command_env(notice: Notice, run_dir: Path) -> dict[str, str]:
    """TUNETOP_* variables for the command hook (empty string for what is unknown)."""
    def s(v):
        return "" if v is None else str(v)
    return {
        "TUNETOP_RUN_ID": run_dir.name, "TUNETOP_RUN_DIR": str(run_dir), "TUNETOP_EVENT": notice.event,
        "TUNETOP_STATUS": notice.status, "TUNETOP_STEP": s(notice.step), "TUNETOP_TOTAL_STEPS": s(notice.total_steps),
        "TUNETOP_LOSS": s(notice.loss), "TUNETOP_EVAL_LOSS": s(notice.eval_loss), "TUNETOP_TITLE": notice.title,
        "TUNETOP_MESSAGE": notice.body, "TUNETOP_ERROR": notice.error, "TUNETOP_HINT": notice.hint,
        "TUNETOP_REPORT": s(notice.fields.get("report")), "TUNETOP_OUTPUT": s(notice.fields.get("adapter_path")),
    }


def _run_command(argv: list[str], notice: Notice, run_dir: Path, timeout_s: float) -> str | None:
    env = {**os.environ, **command_env(notice, run_dir)}
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s,
                              cwd=run_dir)
    except FileNotFoundError:
        return f'program "{argv[0]}" not found'
    except subprocess.TimeoutExpired:
        return f"it ran longer than {timeout_s:g} s and was killed"
    except OSError as exc:
        return f"{exc.strerror or exc}"
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"exit status {done.returncode}" + (f": {tail[0][:200]}" if tail[0] else "")
    return None


def _quiet_apprise() -> None:
    # apprise logs failures with the host and path in them; URLs are secrets, so none of it reaches engine.log.
    log = logging.getLogger("apprise")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    log.setLevel(logging.CRITICAL + 1)
