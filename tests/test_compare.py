"""`tunetop compare`: runs side by side in a plain terminal, from their run directories."""
from __future__ import annotations

import pytest



@pytest.mark.slow
def test_compare_overlays_loss_and_tables_the_differences(o):
    a, b = o.runs["completed"], o.runs["nan"]
    out = o.cli("compare", a.name, b.name)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"1 {a.name}" in text and f"2 {b.name}" in text       # legend and table header
    assert "train loss" in text and "*" in text and "o" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "0.01" in rows["training.learning_rate"] and "0.005" in rows["training.learning_rate"]
    for label in ("final", "tokens/s", "peak", "wall", "status"):
        assert label in rows, label
    assert "completed" in rows["status"] and "failed" in rows["status"]
    tokens = o.cli("compare", a.name, b.name, o.runs["stopped"].name, "--x", "tokens")
    assert tokens.returncode == 0 and "tokens" in tokens.stdout and f"3 {o.runs['stopped'].name}" in tokens.stdout


@pytest.mark.slow
def test_compare_bad_input(o):
    one = o.cli("compare", o.runs["completed"].name)
    assert one.returncode == 2 and "at least two runs" in one.stderr and "Traceback" not in one.stderr
    unknown = o.cli("compare", o.runs["completed"].name, "no-such-run")
    assert unknown.returncode == 2 and 'no run matches "no-such-run"' in unknown.stderr
    twice = o.cli("compare", o.runs["completed"].name, o.runs["completed"].name)
    assert twice.returncode == 2 and "named twice" in twice.stderr
