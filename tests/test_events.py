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
