"""The event stream contract: round trip, torn and garbage lines, incremental tailing."""
from __future__ import annotations

import json

from engine import events as ev
from engine.rundir import RunState


def test_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    w.write("start", run_id="r", total_steps=10, micro_batch=4, grad_accum=2, devices=["cpu"])
    w.write("step", step=1, loss=2.5, lr=1e-3, memory={"rss": 123})
    w.write("end", status="completed", step=10)
    w.close()
    got = ev.read_all(path)
    assert [e["type"] for e in got] == ["start", "step", "end"]
    assert all(e["v"] == ev.SCHEMA_VERSION and isinstance(e["t"], float) for e in got)
    assert got[1]["memory"] == {"rss": 123} and got[1]["loss"] == 2.5
    assert path.read_text().count("\n") == 3


def test_reader_skips_torn_last_line_and_garbage(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(ev.make("step", step=1, loss=1.0)), "this is not json", "[1, 2, 3]",
             json.dumps({"no": "type"}), json.dumps(ev.make("step", step=2, loss=0.9))]
    path.write_text("\n".join(lines) + '\n{"v":1,"t":1.0,"type":"st')
    got = ev.read_all(path)
    assert [e["step"] for e in got] == [1, 2]


def test_writer_after_a_torn_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(ev.make("step", step=1)) + '\n{"v":1,"type":"ste')
    w = ev.EventWriter(path)
    w.write("step", step=2)
    w.close()
    assert [e["step"] for e in ev.read_all(path)] == [1, 2]


def test_tail_returns_only_new_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = ev.EventTail(path)
    assert tail.poll() == []                      # no file yet
    with open(path, "w") as f:
        f.write(json.dumps(ev.make("step", step=1)) + "\n" + '{"v":1,"t":2,"type":"step","st')
    assert [e["step"] for e in tail.poll()] == [1]
    with open(path, "a") as f:
        f.write('ep":2}\n')
    assert [e["step"] for e in tail.poll()] == [2]   # the half line, now complete
    assert tail.poll() == []


def test_tail_starts_over_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(ev.make("step", step=i)) + "\n" for i in range(5)))
    tail = ev.EventTail(path)
    assert len(tail.poll()) == 5
    path.write_text(json.dumps(ev.make("step", step=99)) + "\n")
    assert [e["step"] for e in tail.poll()] == [99]


def test_state_ignores_unknown_types_and_fields():
    s = RunState(run_id="r", path=None)
    for e in [ev.make("start", total_steps=10, method="lora", future_field=1), ev.make("telepathy", x=1),
              {"v": 99, "t": 5.0, "type": "step", "step": 3, "loss": "not a number"},
              ev.make("step", step=4, loss=1.5, lr=1e-3)]:
        s.apply(e)
    assert (s.step, s.loss, s.total_steps, s.method) == (4, 1.5, 10, "lora")
    assert s.status == "interrupted"              # no end event and no live process


def test_speeds_and_eta_come_from_event_timestamps():
    s = RunState(run_id="r", path=None, alive=True)
    s.apply({"v": 1, "t": 100.0, "type": "start", "total_steps": 100})
    for i in range(1, 11):
        s.apply({"v": 1, "t": 100.0 + 2 * i, "type": "step", "step": i, "tokens_seen": 1000 * i})
    assert abs(s.steps_per_s - 0.5) < 1e-9 and abs(s.tokens_per_s - 500) < 1e-9
    assert abs(s.eta_s - 180) < 1e-6


# -- robust and cheap readers -------------------------------------------------------------------------------

def test_deeply_nested_and_oversized_lines_are_skipped(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    deep = b'{"type":"step","x":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    monkeypatch.setattr(ev, "MAX_LINE_BYTES", 4096)
    huge = json.dumps(ev.make("log", message="x" * 10_000)).encode()
    path.write_bytes(b"\n".join([json.dumps(ev.make("step", step=1)).encode(), deep, huge,
                                 json.dumps(ev.make("step", step=2)).encode()]) + b"\n")
    assert [e["step"] for e in ev.read_all(path)] == [1, 2]          # no RecursionError, no 10 kB line
    tail, _, _ = ev.read_tail(path, first=64)
    assert [e.get("step") for _, e in tail] == [1, 2]


def test_tail_reads_a_bounded_window_from_the_end(tmp_path):
    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        for i in range(5000):
            f.write(json.dumps(ev.make("step", step=i)) + "\n")
    def make_until():
        seen = []
        return lambda e: seen.append(e) or len(seen) >= 10
    tail, lo, end = ev.read_tail(path, make_until, first=1024, limit=1 << 20)
    assert [e["step"] for _, e in tail] == list(range(4990, 5000)) and lo == tail[0][0]
    everything, lo_all, _ = ev.read_tail(path, first=1024, limit=1 << 30)    # no predicate: the whole file
    assert [e["step"] for _, e in everything] == list(range(5000)) and lo_all == 0
    assert end == path.stat().st_size
    offset, first_event = tail[0]
    assert ev.parse_line(path.read_bytes()[offset:].split(b"\n")[0]) == first_event


def _write_run(run_dir, segments):
    """segments: [(t_start, n_steps, end_status or None)]; each segment is 1 s per step."""
    from engine import rundir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.toml").write_text('name = "t"\n')
    path = run_dir / "events.jsonl"
    step = 0
    for t0, n, status in segments:
        rundir.record_segment(run_dir)   # what the launcher does before each (re)start
        with open(path, "a") as f:
            f.write(json.dumps({"v": 1, "t": t0, "type": "start", "profile": "t", "total_steps": 100}) + "\n")
            for i in range(1, n + 1):
                step += 1
                f.write(json.dumps({"v": 1, "t": t0 + i, "type": "step", "step": step, "loss": 1.0 / step,
                                    "pad": "p" * 300}) + "\n")
            if status:
                f.write(json.dumps({"v": 1, "t": t0 + n, "type": "end", "status": status, "step": step}) + "\n")
    return path


def test_elapsed_is_training_time_over_all_segments_and_large_files_read_the_same(tmp_path, monkeypatch):
    from engine import rundir
    # Two segments of 400 s with an hour between them (the run was stopped): elapsed 800 s, not 4400.
    run_dir = tmp_path / "r"
    _write_run(run_dir, [(1000.0, 400, "stopped"), (5000.0, 400, "completed")])
    monkeypatch.setattr(rundir, "FULL_READ_BYTES", 1 << 30)   # fold every event: the reference
    exact = rundir.read_state(run_dir)
    assert not exact.partial and exact.elapsed == 800.0 and exact.status == "completed"
    monkeypatch.setattr(rundir, "FULL_READ_BYTES", 1024)   # force the head + segment + tail path
    monkeypatch.setattr(rundir, "TAIL_LIMIT", 32 << 10)
    cheap = rundir.read_state(run_dir)
    assert cheap.partial
    assert (cheap.status, cheap.step, cheap.loss, cheap.elapsed, cheap.total_steps, cheap.started) == (
        exact.status, exact.step, exact.loss, exact.elapsed, exact.total_steps, exact.started)
    assert cheap.steps_per_s == exact.steps_per_s


def test_a_completed_run_with_its_output_never_reads_as_failed(tmp_path):
    from engine import rundir
    run_dir = tmp_path / "done"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "run.toml").write_text('name = "t"\n')
    assert rundir.read_state(run_dir).status == "completed"                  # events.jsonl missing
    (run_dir / "events.jsonl").write_text("")
    assert rundir.read_state(run_dir).status == "completed"                  # empty
    (run_dir / "events.jsonl").write_text('{"v":1,"t":1,"type":"start"}\n{"v":1,"t":2,"type":"st')
    assert rundir.read_state(run_dir).status == "completed"                  # cut short


def test_hung_and_stalled_follow_the_documented_thresholds(monkeypatch):
    import time
    now = time.time()
    s = RunState(run_id="r", path=None, alive=True, alive_since=now - 1000)
    s.apply({"v": 1, "t": now - 500, "type": "start", "total_steps": 100})
    for i in range(1, 21):
        s.apply({"v": 1, "t": now - 500 + i, "type": "step", "step": i})   # 1 s a step, last one 480 s ago
    s.heartbeat_t = now - 1
    monkeypatch.setenv("TUNETOP_STALL_MIN_S", "600")
    assert s.status == "running" and s.stall_after_s == 600
    monkeypatch.setenv("TUNETOP_STALL_MIN_S", "5")
    assert s.stall_after_s == 10 and s.status == "stalled" and "no step for" in s.note   # 10 x median 1 s
    s.heartbeat_t = now - 40
    assert s.status == "hung"                                    # default TUNETOP_HUNG_AFTER_S = 30
    monkeypatch.setenv("TUNETOP_HUNG_AFTER_S", "60")
    assert s.status == "stalled"
    s.alive = False
    assert s.status == "interrupted"
