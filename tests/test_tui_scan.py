"""Reading event streams for the dashboard: the fast scan, the fixed-resolution loss series, the tracker."""
from __future__ import annotations

import json
import math
import random

from engine import rundir
from engine.growing_file import GrowingFile
from tuiapp.scan import first_step_after, sample, scan
from tuiapp.series import MAX_BINS, Series
from tuiapp.tracker import PREVIEW_BYTES, RunTracker

from .tui_helpers import demo_events, ev, make_run


def compact(events) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)


def collect(name="loss"):
    pts = []
    return pts, lambda curve, s, v: pts.extend(zip(s, v)) if curve == name else None


def test_fast_scan_matches_json_parsing(tmp_path):
    events = demo_events(steps=300, total=300)
    path = tmp_path / "events.jsonl"
    path.write_bytes(compact(events))
    pts, sink = collect()
    r = scan(path, sink)
    assert pts == [(e["step"], e["loss"]) for e in events if e["type"] == "step"]
    assert [e["type"] for _, e in r.events] == [e["type"] for e in events if e["type"] != "step"]
    assert r.corrupt == 0 and r.offset == path.stat().st_size and r.step_events == 300
    assert [e["step"] for _, e in r.tail_steps] == list(range(237, 301))
    assert first_step_after(path, r.events[0][0])["step"] == 1


def test_scan_survives_garbage_spacing_torn_lines_and_small_chunks(tmp_path, monkeypatch):
    import tuiapp.scan as scan_mod
    monkeypatch.setattr(scan_mod, "CHUNK", 700)            # many chunks, lines split across reads
    events = demo_events(steps=50, total=50)
    lines = [json.dumps(e, separators=(",", ":")) for e in events]
    lines[10] = json.dumps(events[10])                      # another writer's spacing
    lines.insert(20, "garbage {not json")
    lines.insert(30, "")
    lines[40] = lines[40].replace('"loss":', '"loss":null,"x":')   # a step without a usable loss
    path = tmp_path / "events.jsonl"
    path.write_bytes(("\n".join(lines) + "\n" + lines[5][:30]).encode())
    pts, sink = collect()
    r = scan(path, sink)
    expect = [(e["step"], e["loss"]) for e in events if e["type"] == "step"]
    got = dict(pts)
    assert len(pts) == len(expect) - 1 and all(got[s] == l for s, l in expect if s in got)
    assert r.corrupt == 1 and r.torn_tail == lines[5][:30].encode()


def test_series_bins_match_brute_force():
    random.seed(1)
    s = Series()
    n = 50_000
    steps = list(range(1, n + 1))
    vals = [5 + math.sin(i / 500) + random.random() * 0.1 for i in steps]
    s.extend(steps[:20_000], vals[:20_000])                 # bulk, then point by point, then bulk
    for i in range(20_000, 20_100):
        s.add(steps[i], vals[i])
    s.extend(steps[20_100:], vals[20_100:])
    assert len(s.cnt) <= MAX_BINS and s.count == n and s.last_step == n
    cols = s.columns(100, n)
    for x in (0, 37, 99):
        lo_step, hi_step = x * n / 100, (x + 1) * n / 100
        members = [v for st, v in zip(steps, vals) if lo_step < st <= hi_step]
        mean = sum(members) / len(members)
        # A bin (64 steps here) lands in one column whole, so a column's edge may move by up to one bin:
        # at this curve's steepest (1/500 per step) that shifts the mean by at most about 0.13.
        assert abs(cols[x][0] - mean) < 0.13
    s.add(10, float("nan"))
    assert s.nonfinite == 1


def test_series_handles_resumed_runs_and_out_of_order_steps():
    s = Series()
    steps = list(range(1, 101)) + list(range(80, 201))     # resumed from a checkpoint at 80
    s.extend(steps, [1.0] * len(steps))
    assert s.count == len(steps) and s.max_step == 200
    assert all(c is None or c[0] == 1.0 for c in s.columns(50, 200))


def test_sample_reads_evenly_across_the_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(compact(demo_events(steps=5000, total=5000)))
    steps = [e["step"] for e in sample(path, path.stat().st_size, points=100)]
    assert 90 <= len(steps) <= 100 and steps[0] <= 60 and steps[-1] >= 4900


def test_tracker_loads_then_follows_appends_truncation_and_torn_lines(tmp_path):
    run = make_run(tmp_path, "r", demo_events(steps=10, total=20, end=None))
    t = RunTracker(run)
    t.load()
    s = t.view.state
    assert s.step == 10 and s.status == "interrupted" and t.view.loss.count == 10 and t.view.evals.count == 1
    assert t.view.avg_rates[0] == 1.0                     # 1 step/s from event timestamps
    with open(run / rundir.EVENTS, "ab") as f:
        f.write(compact([ev("step", 1.7e9 + 11, step=11, total_steps=20, loss=1.5, tokens_seen=1100)]))
        f.write(b'{"v":1,"t":1.7e9,"type":"st')               # being written
    assert t.poll(now=1e9)
    assert t.view.state.step == 11 and t.view.loss.last == 1.5 and t.view.torn
    with open(run / rundir.EVENTS, "ab") as f:
        f.write(b'ep","step":12,"loss":1.4}\nnot json\n')
    t.poll(now=1e9 + 5)
    assert t.view.state.step == 12 and t.view.corrupt == 1 and not t.view.torn
    (run / rundir.EVENTS).write_bytes(compact(demo_events(steps=3, total=20)))   # replaced by a shorter file
    t.poll(now=1e9 + 10)
    assert t.view.state.step == 3 and t.view.loss.count == 3 and t.view.corrupt == 0


def test_tracker_previews_a_big_file_before_the_exact_scan(tmp_path):
    events = demo_events(steps=1, total=100_000)
    run = make_run(tmp_path, "big", None)
    line = compact([events[1]])
    n = PREVIEW_BYTES // len(line) + 2000
    body = compact(events[:1]) + b"".join(
        compact([dict(events[1], step=i, loss=10 - i / n, t=1.7e9 + i)]) for i in range(1, n + 1))
    (run / rundir.EVENTS).write_bytes(body)
    t = RunTracker(run)
    seen = []
    t.load(publish=lambda: seen.append((t.view.preview, t.view.loss.count, t.view.state.step)))
    assert seen and seen[0][0] and 0 < seen[0][1] < n and seen[0][2] == n   # preview: sampled curve, real step
    assert not t.view.preview and t.view.loss.count == n and t.view.state.step == n


def test_growing_file_follows_whole_lines_truncation_and_rotation(tmp_path):
    log = tmp_path / "engine.log"
    log.write_bytes(b"a\nb\npartial")
    f = GrowingFile(log)
    c = f.read()
    assert c.lines == [b"a", b"b"] and c.partial == b"partial" and not c.reset and f.offset == 4
    assert f.read().lines == [] and f.offset == 4            # the unfinished line is not consumed
    with open(log, "ab") as out:
        out.write(b" line\nnext")
    assert f.read().lines == [b"partial line"] and f.pending() == 4
    log.write_bytes(b"new\n")                              # truncated
    c = f.read()
    assert c.reset and c.lines == [b"new"]
    assert f.read() is None                                # nothing new
    rotated = tmp_path / "engine.log.1"
    log.rename(rotated)
    log.write_bytes(b"fresh file, longer than the old one\n")   # rotated: another inode, not shorter
    assert f.pending() is None
    c = f.read()
    assert c.reset and c.lines == [b"fresh file, longer than the old one"]


def test_growing_file_opens_at_the_tail_and_skips_the_cut_line(tmp_path):
    log = tmp_path / "engine.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    f = GrowingFile(log, tail_bytes=40)
    c = f.read()
    assert c.skipped > 0 and c.lines and c.lines[-1] == b"line 999"
    assert all(line.startswith(b"line ") for line in c.lines)   # the cut first line was dropped
    f.offset = 0                                                # continue from a known line start
    assert f.read(max_bytes=14).lines == [b"line 0", b"line 1"]
    long = tmp_path / "long.log"
    long.write_bytes(b"x" * 100)
    g = GrowingFile(long)
    assert g.read(max_bytes=10).lines == [b"x" * 10]            # a line longer than a read still moves on
