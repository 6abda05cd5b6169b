"""Toasts and the terminal bell for what the engine would notify about, while a dashboard is open.

A thread worker follows every run's events.jsonl from where it stood when the dashboard first saw it (old
news is not announced again), folds new events through engine.notify.Rules (the engine's own rules, so the
dashboard and the messages agree) and posts an Alert. Delivery to phones and inboxes stays with the engine:
this only shows what the dashboard already reads. It also measures each run's disk use now and then.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from textual.message import Message

from engine import events as ev
from engine import rundir
from engine.notify import Notice, Rules

DISK_EVERY_S = 30.0


class Alert(Message):
    def __init__(self, notice: Notice):
        super().__init__()
        self.notice = notice


class DiskUse(Message):
    def __init__(self, sizes: dict[str, int]):
        super().__init__()
        self.sizes = sizes


def alerts_loop(root: Path, post: Callable, stop: threading.Event, interval: float = 1.0,
                cancelled: Callable[[], bool] = lambda: False) -> None:
    followed: dict[str, tuple[ev.EventTail, Rules]] = {}
    first = True
    disk_at = -DISK_EVERY_S
    clock = 0.0
    while not stop.is_set() and not cancelled():
        try:
            runs = rundir.list_runs(root)
        except Exception:  # noqa: BLE001 - the runs table reports an unreadable root
            runs = []
        for run in runs:
            if run.name not in followed:
                tail = ev.EventTail(run / rundir.EVENTS)
                if first:                      # runs already there: from their end
                    try:
                        tail.offset = (run / rundir.EVENTS).stat().st_size
                    except OSError:
                        tail.offset = 0
                followed[run.name] = (tail, Rules(run.name))
            tail, rules = followed[run.name]
            for e in tail.poll():
                notice = rules.feed(e)
                if notice is not None:
                    post(Alert(notice))
        first = False
        if clock - disk_at >= DISK_EVERY_S:
            disk_at = clock
            post(DiskUse({r.name: rundir.disk_use(r) for r in runs}))
        stop.wait(interval)
        clock += interval
