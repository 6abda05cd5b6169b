"""The order tests are handed to the xdist workers: longest work first, from measured durations.

pytest-xdist's loadgroup scheduler hands out work units (a group of tests sharing a fixture, or one test)
in the order it receives them, and by default reorders groups by their number of tests, not their time. So
a 150-second engine test collected last kept one worker busy while the other sat idle. Sorting units by
their measured time, longest first (the classic longest-processing-time rule), leaves only short tests for
the end, where they fill in around the long ones.

Durations live in tests/durations.json (seconds per test id, setup + call + teardown, measured on the
2-core machine the suite is sized for). A test missing from it counts DEFAULT_S, or SLOW_S when it is
marked slow. Refresh the file after adding slow tests:

    TUNETOP_RECORD_DURATIONS=tests/durations.json python -m pytest -q
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

DURATIONS = Path(__file__).with_name("durations.json")
RECORD_ENV = "TUNETOP_RECORD_DURATIONS"
DEFAULT_S = 0.5
SLOW_S = 20.0


def load(path: Path = DURATIONS) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def unit_of(item) -> str:
    """The work unit xdist's loadgroup scheduler will make of this test: its group, else the test."""
    for mark in item.iter_markers("xdist_group"):
        name = mark.kwargs.get("name", mark.args[0] if mark.args else None)
        if name:
            return f"group:{name}"
    return item.nodeid


def plain_id(nodeid: str) -> str:
    """The test id without the "@group" suffix xdist adds to grouped tests (after this plugin's ordering)."""
    return nodeid[:nodeid.rfind("@")] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid


def longest_first(items: list, durations: dict[str, float]) -> list:
    """Items reordered so that work units come longest first; tests keep their order within a unit."""
    cost: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        unit = unit_of(item)
        first.setdefault(unit, i)
        known = durations.get(item.nodeid)
        cost[unit] += known if known is not None else (SLOW_S if item.get_closest_marker("slow") else DEFAULT_S)
    order = sorted(range(len(items)), key=lambda i: (-cost[unit_of(items[i])], first[unit_of(items[i])], i))
    return [items[i] for i in order]


class Recorder:
    """Sums each test's setup, call and teardown time (in the controller, where xdist reports arrive) and
    writes them to the file named by TUNETOP_RECORD_DURATIONS at the end of the session."""

    def __init__(self, path: Path):
        self.path = path
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[plain_id(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session) -> None:
        if hasattr(session.config, "workerinput"):   # an xdist worker: the controller writes the file
            return
        rounded = {k: round(v, 2) for k, v in sorted(self.seconds.items())}
        self.path.write_text(json.dumps(rounded, indent=0) + "\n")


def recorder_from_env() -> Recorder | None:
    target = os.environ.get(RECORD_ENV)
    return Recorder(Path(target)) if target else None
