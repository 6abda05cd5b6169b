"""Which events deserve a notification, and what it says. Pure: events in, notices out.

The engine's notifier and the dashboard's toasts both fold the run's events through `Rules`, so they
agree on what is worth a message:

    completed / failed / stopped   the `end` event (a failed end caused by a NaN loss also counts as "nan":
                                   with training.on_nan = "stop" that one message is the NaN notification)
    backoff                        the run's FIRST out-of-memory backoff (reason oom*); later ones are quiet
    nan                            a NaN/inf loss that training goes on after (on_nan = "warn": a log warning
                                   with code "nan_loss", from engine/train/nan_guard.py)
    stalled                        no step for too long (log event with code "stalled", from watchdog.py)
    eval_rising                    the eval loss rose N evaluations in a row (once, re-armed by a fall)

`prime(events)` folds what a run directory already holds without producing notices: a relaunched or
resumed engine must not announce the first backoff twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..units import duration


@dataclass
class Notice:
    event: str                       # one of userconfig.NOTIFY_EVENTS
    title: str
    body: str
    status: str = "running"          # the run's status as of this notice
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    error: str = ""
    hint: str = ""
    also: tuple = ()                 # other event names this notice answers to ("nan" for a NaN failure)
    level: str = "information"       # information | warning | error (toasts)
    fields: dict = field(default_factory=dict)

    def matches(self, wanted) -> bool:
        return self.event in wanted or any(a in wanted for a in self.also)


class Rules:
    def __init__(self, run_id: str = "", eval_rising: int = 3):
        self.run_id = run_id
        self.eval_rising = max(1, int(eval_rising))
        self.profile = ""
        self.step: int | None = None
        self.total_steps: int | None = None
        self.loss: float | None = None
        self.eval_loss: float | None = None
        self.started: float | None = None
        self.backoff_seen = False
        self.nan_seen = False
        self._evals: list[float] = []
        self._rising = 0
        self._rising_sent = False

    def prime(self, events) -> None:
        for e in events:
            self.feed(e)

    def feed(self, e: dict) -> Notice | None:
        kind = e.get("type")
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) else None
        return handler(e) if handler else None

    # -- per type ----------------------------------------------------------------------------------------

    def _on_start(self, e):
        self.run_id = e.get("run_id") or self.run_id
        self.profile = e.get("profile") or self.profile
        self.total_steps = _int(e.get("total_steps")) or self.total_steps
        if self.started is None and _num(e.get("t")):
            self.started = e["t"]

    def _on_step(self, e):
        self.step = _int(e.get("step"), self.step)
        self.total_steps = _int(e.get("total_steps")) or self.total_steps
        if _num(e.get("loss")):
            self.loss = float(e["loss"])

    def _on_eval(self, e):
        if not _num(e.get("eval_loss")) or not math.isfinite(e["eval_loss"]):
            return None
        value = float(e["eval_loss"])
        prev = self._evals[-1] if self._evals else None
        self._evals.append(value)
        self.eval_loss = value
        if prev is None or value <= prev:
            self._rising, self._rising_sent = 0, False
            return None
        self._rising += 1
        if self._rising < self.eval_rising or self._rising_sent:
            return None
        self._rising_sent = True
        trail = " -> ".join(_fmt(v) for v in self._evals[-self._rising - 1:])
        step = _int(e.get("step"), self.step)
        return self._notice("eval_rising", f"eval loss rising ({self._rising} in a row)",
                            f"eval loss rose {self._rising} evaluations in a row at step {step}: {trail}. "
                            "The model may be overfitting: compare checkpoints, lower the learning rate or "
                            "stop early.", level="warning", step=step)

    def _on_backoff(self, e):
        if not str(e.get("reason", "")).startswith("oom") or self.backoff_seen:
            return None
        self.backoff_seen = True
        step = _int(e.get("step"), self.step)
        return self._notice("backoff", "out-of-memory backoff", str(e.get("message") or "out of memory; backing off"),
                            level="warning", step=step)

    def _on_log(self, e):
        code = e.get("code")
        if code == "nan_loss" and not self.nan_seen:
            self.nan_seen = True
            if e.get("level") == "error":
                return None        # the run stops: its `end` event carries the news in one message
            return self._notice("nan", "NaN/inf loss", str(e.get("message", "")), level="error",
                                step=_int(e.get("step"), self.step))
        if code == "stalled":
            return self._notice("stalled", "stalled", str(e.get("message", "")), level="warning")
        return None

    def _on_end(self, e):
        status = e.get("status") if e.get("status") in ("completed", "stopped", "failed") else "failed"
        self.step = _int(e.get("step"), self.step)
        self.total_steps = _int(e.get("total_steps")) or self.total_steps
        if _num(e.get("final_loss")):
            self.loss = float(e["final_loss"])
        parts = [f"{status} at step {self.step if self.step is not None else 0}/{self.total_steps or '?'}"]
        if self.loss is not None:
            parts.append(f"loss {_fmt(self.loss)}")
        if self.eval_loss is not None:
            parts.append(f"eval loss {_fmt(self.eval_loss)}")
        wall = e["t"] - self.started if _num(e.get("t")) and self.started else e.get("runtime_s")
        if _num(wall):
            parts.append(f"wall time {duration(wall)}")
        body = ", ".join(parts) + "."
        if e.get("adapter_path"):
            body += f" Output: {e['adapter_path']}/."
        if e.get("error"):
            body += f"\nError: {e['error']}"
        if e.get("hint"):
            body += f"\nHint: {e['hint']}"
        level = {"completed": "information", "stopped": "warning"}.get(status, "error")
        nan = status == "failed" and (e.get("reason") == "nan_loss" or self.nan_seen)
        also = ("nan",) if nan else ()
        notice = self._notice(status, "failed (NaN/inf loss)" if nan else status, body, level=level, status=status, also=also,
                              error=str(e.get("error") or ""), hint=str(e.get("hint") or ""))
        notice.fields["adapter_path"] = e.get("adapter_path") or ""
        return notice

    def _notice(self, event, what, body, level="information", status="running", step=None, **kw) -> Notice:
        return Notice(event=event, title=f"tunetop: {self.run_id} {what}", body=body, status=status,
                      step=step if step is not None else self.step, total_steps=self.total_steps,
                      loss=self.loss, eval_loss=self.eval_loss, level=level, **kw)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v, default=None):
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)
