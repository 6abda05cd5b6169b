"""Reading event streams for the dashboard: the fast scan, the fixed-resolution loss series, the tracker."""
from __future__ import annotations

import json
import math
import random
import time

import pytest

from engine import rundir
from engine.growing_file import GrowingFile
from tuiapp import curve_cache, series as series_mod, tracker as tracker_mod
from tuiapp.scan import first_step_after, sample, scan
from tuiapp.series import MAX_BINS, Series
from tuiapp.tracker import CURVES, RunTracker

from .tui_helpers import demo_events, ev, make_run


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Saved readings (curve_cache) go under TUNETOP_HOME: a private one, never the user's."""
    monkeypatch.setenv("TUNETOP_HOME", str(tmp_path / "home"))


def compact(events) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)


def collect(name="loss"):
    pts = []
    return pts, lambda curve, s, v: pts.extend(zip(s, v)) if curve == name else None


def collect_all():
    got: dict[str, list] = {}
    return got, lambda curve, s, v: got.setdefault(curve, []).extend(zip(s, v))


def test_fast_scan_matches_json_parsing(tmp_path, monkeypatch):
    import tuiapp.scan as scan_mod
    events = demo_events(steps=300, total=300)
    for e in events:
        if e["type"] == "step":     # values of every shape json.dumps writes: exponents, negatives, ints
            e.update(lr=3e-5 * e["step"], grad_norm=-0.5 if e["step"] == 7 else 10 ** (e["step"] % 9 - 4),
                     tokens_seen=e["step"] * 2048)
    events[40]["lr"] = None          # lr / grad_norm not logged: those steps are left out of that curve only
    events[41]["grad_norm"] = None
    path = tmp_path / "events.jsonl"
    path.write_bytes(compact(events))
    # Every chunk here is canonical: the slow path must not be needed.
    monkeypatch.setattr(scan_mod, "_scan_slow", lambda *a: pytest.fail("slow path taken"))
    got, sink = collect_all()
    r = scan(path, sink)
    steps = [e for e in events if e["type"] == "step"]
    for curve, key in (("loss", "loss"), ("lr", "lr"), ("grad_norm", "grad_norm"), ("tokens", "tokens_seen")):
        assert got[curve] == [(e["step"], e[key]) for e in steps if e[key] is not None], curve
    assert len(got["lr"]) == len(got["grad_norm"]) == 299
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


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "pure"])
def test_series_bins_match_brute_force(numpy, monkeypatch):
    if not numpy:     # the dashboard runs without numpy too: the pure-Python binning must agree
        monkeypatch.setattr(series_mod, "_numpy", lambda: None)
    else:
        series_mod.load_numpy(series_mod.NUMPY_WORTH)
        assert series_mod._numpy() is not None and 20_000 >= series_mod.NUMPY_MIN
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
    # A NaN or inf inside a bulk load: that bin is sorted out point by point, the same as adding one by one.
    pts = list(zip(steps[:5000], vals[:5000]))
    pts[500] = (501, float("inf"))
    t, ref = Series(), Series()
    t.extend([p[0] for p in pts], [p[1] for p in pts])
    for st, v in pts:
        ref.add(st, v)
    assert t.nonfinite == ref.nonfinite == 1 and t.count == ref.count == 4999
    assert t.width == ref.width and t.cnt == ref.cnt and t.lo == ref.lo and t.hi == ref.hi
    assert t.sum == pytest.approx(ref.sum, rel=1e-12)


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


def test_tracker_previews_a_big_file_before_the_exact_scan(tmp_path, monkeypatch):
    monkeypatch.setattr(tracker_mod, "PREVIEW_BYTES", 4 << 20)    # the same path, a smaller file to write
    PREVIEW_BYTES = tracker_mod.PREVIEW_BYTES
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


def big_run(tmp_path, name="big"):
    """A run just past curve_cache.MIN_BYTES: the size where a reattach saves its reading."""
    events = demo_events(steps=1, total=100_000, end=None)
    run = make_run(tmp_path, name, None)
    n = curve_cache.MIN_BYTES // len(compact([events[1]])) + 500
    body = compact(events[:1]) + b"".join(
        compact([dict(events[1], step=i, loss=10 - i / n, lr=1e-4 + i * 1e-9, t=1.7e9 + i, tokens_seen=i * 64)])
        + (compact([ev("eval", 1.7e9 + i, step=i, eval_loss=9 - i / n)]) if i % 1000 == 0 else b"")
        for i in range(1, n + 1))
    (run / rundir.EVENTS).write_bytes(body)
    return run, n


def same_view(a, b) -> None:
    for name in CURVES:
        assert getattr(a, name).state() == getattr(b, name).state(), name
    assert a.evals.state() == b.evals.state()
    assert (a.state.step, a.state.status, a.state.loss, a.avg_rates, a.problems, a.recent) == \
        (b.state.step, b.state.status, b.state.loss, b.avg_rates, b.problems, b.recent)


def test_a_reattach_reads_only_what_was_appended_since_the_last_one(tmp_path, monkeypatch):
    run, n = big_run(tmp_path)
    first = RunTracker(run)
    first.load()
    assert curve_cache.cache_file(run / rundir.EVENTS).exists()
    with open(run / rundir.EVENTS, "ab") as f:     # the run went on while no dashboard was open
        f.write(compact([ev("step", 1.7e9 + n + 1, step=n + 1, total_steps=100_000, loss=0.5, lr=2e-4,
                            grad_norm=0.1, tokens_seen=(n + 1) * 64),
                         ev("eval", 1.7e9 + n + 2, step=n + 1, eval_loss=0.4)]))
    starts = []
    real_scan = tracker_mod.scan
    monkeypatch.setattr(tracker_mod, "scan", lambda path, sink, start=0, **kw: (
        starts.append(start), real_scan(path, sink, start=start, **kw))[1])
    again = RunTracker(run)
    again.load()
    size = (run / rundir.EVENTS).stat().st_size
    assert starts and size - starts[0] < 500          # only the two appended lines were scanned
    v = again.view
    assert (v.state.step, v.loss.count, v.loss.last, v.lr.last, v.tokens.last) == (n + 1, n + 1, 0.5, 2e-4, (n + 1) * 64)
    assert v.evals.count == n // 1000 + 1 and v.evals.last == 0.4
    # Exactly what a reader without the saved copy sees.
    monkeypatch.setattr(tracker_mod, "scan", real_scan)
    curve_cache.cache_file(run / rundir.EVENTS).unlink()
    full = RunTracker(run)
    full.load()
    same_view(v, full.view)


def test_a_saved_reading_of_another_file_is_never_used(tmp_path):
    run, n = big_run(tmp_path)
    RunTracker(run).load()
    events = run / rundir.EVENTS
    data = bytearray(events.read_bytes())
    assert data[:7] == b'{"v":1,'
    data[5:6] = b"2"
    events.write_bytes(bytes(data))            # rewritten in place: same inode and size, the head differs
    assert curve_cache.load(events) is None
    events.write_bytes(compact(demo_events(steps=3, total=20)))   # replaced by a short file
    t = RunTracker(run)
    t.load()
    assert t.view.loss.count == 3 and t.view.state.step == 3
    curve_cache.cache_file(events).write_text("{not json")            # damaged: ignored, full scan
    assert curve_cache.load(events) is None


def test_saved_readings_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(curve_cache, "MIN_BYTES", 0)
    monkeypatch.setattr(curve_cache, "MAX_FILES", 2)
    paths = []
    for k in range(3):
        path = tmp_path / f"events{k}.jsonl"
        path.write_bytes(compact(demo_events(steps=2)))
        assert curve_cache.save(path, path.stat().st_size, {"loss": Series()}, Series(), [], 0, 2)
        paths.append(path)
        time.sleep(0.01)
    assert not curve_cache.cache_file(paths[0]).exists()
    assert all(curve_cache.cache_file(p).exists() for p in paths[1:])
    assert curve_cache.load(paths[2]).step_events == 2
