"""events.idx (engine/event_index.py): the engine's binary index of events.jsonl, believed only when it
matches the file. Every case compares the dashboard's scan with the index against the scan without it."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from engine import event_index
from engine.events import EventWriter
from tuiapp.scan import scan


def read_with(path: Path, use_index: bool, start: int = 0):
    idx = event_index.index_path(path)
    hidden = idx.with_suffix(".hidden")
    if not use_index and idx.exists():
        idx.rename(hidden)
    points: dict[str, list] = {}
    try:
        result = scan(path, lambda name, s, v: points.setdefault(name, []).extend(
            zip(list(map(int, s)), [x if math.isfinite(x) else str(x) for x in map(float, v)])), start=start)
    finally:
        if hidden.exists():
            hidden.rename(idx)
    return points, result


def same(path: Path, start: int = 0):
    """The scan with the index equals the scan of the file alone: points, events, counts, offsets."""
    a, ra = read_with(path, True, start)
    b, rb = read_with(path, False, start)
    assert a == b
    assert [(o, e) for o, e in ra.events] == [(o, e) for o, e in rb.events]
    assert (ra.step_events, ra.corrupt, ra.offset, ra.torn_tail) == (rb.step_events, rb.corrupt, rb.offset,
                                                                     rb.torn_tail)
    assert ra.tail_steps == rb.tail_steps
    return a


def write_run(path: Path, steps: range, writer: EventWriter | None = None) -> EventWriter:
    w = writer or EventWriter(path)
    for s in steps:
        w.write("step", step=s, total_steps=1000, epoch=s / 1000, loss=5.0 - s / 1000,
                lr=None if s % 7 == 0 else 1e-3 * (1 - s / 1000), grad_norm=0.5 + s % 3,
                tokens_seen=s * 256, step_time=0.1)
        if s % 50 == 0:
            w.write("eval", step=s, eval_loss=4.0)
            w.write("log", level="info", message=f"step {s}")
    return w


def test_the_index_gives_what_the_file_says(tmp_path):
    path = tmp_path / "events.jsonl"
    w = write_run(path, range(1, 301))
    w.write("step", step=301, total_steps=1000, epoch=0.3, loss=float("nan"), lr=1e-3, grad_norm=None,
            tokens_seen=301 * 256)
    w.close()
    covered = event_index.read(path)
    assert covered is not None and covered.step_events == 301 and len(covered.others) == 12
    assert covered.end == path.stat().st_size and covered.gaps == []
    points = same(path)
    assert len(points["loss"]) == 301 and points["loss"][-1] == (301, "nan")
    assert len(points["lr"]) == 301 - 42 and len(points["grad_norm"]) == 300   # nulls are left out
    same(path, start=path.read_bytes().index(b'"step":100,') - 30 + 1)   # mid-file starts go the same way


def test_lines_the_index_does_not_cover_are_read_from_the_file(tmp_path):
    path = tmp_path / "events.jsonl"
    w = write_run(path, range(1, 101))
    # Another writer appends a line (a relaunch's first event, a hand edit), then a torn one.
    with open(path, "ab") as f:
        f.write(json.dumps({"v": 1, "t": 1.0, "type": "step", "step": 101, "loss": 2.0, "lr": 1e-3,
                            "grad_norm": 1.0, "tokens_seen": 1}).encode() + b"\n" + b'{"v":1,"t":2,"ty')
    w.close()
    w = write_run(path, range(102, 201))      # resumed: it ends the torn line first
    w.close()
    covered = event_index.read(path)
    assert covered is not None and len(covered.gaps) == 1
    points = same(path)
    assert [s for s, _ in points["loss"]] == list(range(1, 201))
    # And events appended after the index's last record (the engine died before writing it).
    with open(path, "ab") as f:
        f.write(json.dumps({"v": 1, "t": 3.0, "type": "end", "status": "failed", "step": 200}).encode() + b"\n")
    same(path)


@pytest.mark.parametrize("damage", ["replaced", "truncated", "index garbage", "index shifted", "lines swapped"])
def test_an_index_that_does_not_match_the_file_is_not_believed(tmp_path, damage):
    path = tmp_path / "events.jsonl"
    write_run(path, range(1, 201)).close()
    idx = event_index.index_path(path)
    if damage == "replaced":      # another run's history with the same shape under the same name
        other = tmp_path / "other" / "events.jsonl"
        other.parent.mkdir()
        w = write_run(other, range(1, 201))
        w.write("log", level="info", message="x")
        w.close()
        os.replace(other, path)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "index garbage":
        idx.write_bytes(os.urandom(idx.stat().st_size))
    elif damage == "index shifted":
        data = idx.read_bytes()
        idx.write_bytes(data[event_index.RECORD.size:] + data[:event_index.RECORD.size])
    else:   # two lines of different lengths trade places mid-file: same size, lines moved (not sampled there)
        lines = path.read_bytes().splitlines(keepends=True)
        k = next(i for i in range(101, 200) if len(lines[i]) != len(lines[i + 1]))
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
        path.write_bytes(b"".join(lines))
    if damage != "replaced":
        assert event_index.read(path) is None
    same(path)


def test_a_real_engine_run_writes_an_index_the_scan_believes(o):
    run = o.runs["completed"]
    covered = event_index.read(run / "events.jsonl")
    assert covered is not None and covered.step_events >= 8
    same(run / "events.jsonl")
