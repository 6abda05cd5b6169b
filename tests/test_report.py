"""`tunetop report`: the overnight summary, from the run directory alone, as text, Markdown and HTML."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest



def _flat(text: str) -> str:
    """The report with runs of spaces collapsed (its label column is as wide as the longest label)."""
    return re.sub(r"[ ]{2,}", " ", text)


def _svg_points(svg: str) -> int:
    return sum(len(m.split()) for m in re.findall(r'points="([^"]+)"', svg))


@pytest.mark.slow
def test_text_report_of_a_completed_run(o):
    run = o.runs["completed"]
    out = o.cli("report", run.name)
    assert out.returncode == 0, out.stderr
    text = _flat(out.stdout)
    for expected in ("outcome completed", "steps 8/8", "backoffs 2", "tokens seen",
                     "throughput", "peak host RSS", "checkpoints/checkpoint-8", f"tunetop merge {run.name}",
                     f"tunetop compare {run.name} OTHER_RUN", "loss", "learning rate", "grad norm", str(run / "adapter")):
        assert expected in text, expected
    chart = out.stdout.split("\nloss\n", 1)[1].split("\n\n", 1)[0]
    assert chart.count("*") >= 5          # one mark per step (6 steps, some may share a cell)


@pytest.mark.slow
def test_report_of_failed_runs_says_what_to_do(o, tmp_path):
    nan = o.cli("report", o.runs["nan"].name).stdout
    assert "failed (NaN/inf loss)" in nan and f"tunetop resume {o.runs['nan'].name}" in nan and "hint" in nan
    disk = o.cli("report", o.runs["failed"].name)
    assert disk.returncode == 0 and "No space left on device" in disk.stdout
    # A run that failed before its first step: nothing to chart, and the report says why.
    from engine.events import EventWriter
    run = tmp_path / "runs" / "20261201-000000-early"
    shutil.copytree(o.runs["failed"], run, ignore=shutil.ignore_patterns("checkpoints", "events.jsonl", "engine.lock"))
    w = EventWriter(run / "events.jsonl")
    w.write("end", status="failed", error="out of memory loading the model", hint="use method qlora")
    w.close()
    nothing = o.cli("report", str(run))
    assert nothing.returncode == 2 and "has no training steps to report" in nothing.stderr
    assert "out of memory loading the model" in nothing.stderr and "Traceback" not in nothing.stderr


@pytest.mark.slow
def test_html_report_is_self_contained_with_a_drawn_chart(o, tmp_path):
    run = o.runs["completed"]
    out = o.cli("report", run.name, "--format", "html", "--out", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and 'id="chart-loss"' in page and "completed" in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not load anything"
    loss_svg = page.split('id="chart-loss">', 1)[1].split("</svg>", 1)[0]
    assert _svg_points(loss_svg) >= 6


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(o, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        pytest.skip("no chromium installed")
    run = o.runs["completed"]
    page = tmp_path / "r.html"
    assert o.cli("report", run.name, "--format", "html", "--out", str(page)).returncode == 0
    shot = tmp_path / "r.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1000,1400", page.as_uri()], capture_output=True, timeout=120)
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "polyline" in dom and shot.exists() and shot.stat().st_size > 10_000


@pytest.mark.slow
def test_markdown_report_writes_chart_files_beside_it(o, tmp_path):
    run = o.runs["completed"]
    out = o.cli("report", run.name, "--format", "md", "--out", str(tmp_path / "r.md"))
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "r.md").read_text()
    assert "![loss](r-loss.svg)" in md and "| outcome | completed |" in md
    assert _svg_points((tmp_path / "r-loss.svg").read_text()) >= 6


@pytest.mark.slow
def test_report_reads_a_run_from_before_this_change(o, tmp_path):
    """Old runs: no tokens, memory or notify fields, no [notify] in run.toml, no end event (interrupted)."""
    src = o.runs["completed"]
    old = tmp_path / "runs" / "20200101-000000-old"
    old.mkdir(parents=True)
    toml = (src / "run.toml").read_text()
    (old / "run.toml").write_text(toml.split("[notify]")[0])
    lines = []
    for line in (src / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "end" or e.get("code"):
            continue
        for key in ("tokens_seen", "memory", "tokens_per_s", "samples_per_s", "devices"):
            e.pop(key, None)
        lines.append(json.dumps(e))
    (old / "events.jsonl").write_text("\n".join(lines[:-3]) + "\n{\"v\":1,\"t\":")   # and a torn last line
    out = o.cli("report", str(old))
    assert out.returncode == 0, out.stderr
    assert "interrupted" in out.stdout and "tokens seen -" in _flat(out.stdout)
    assert o.cli("report", str(old), "--format", "html", "--out", str(tmp_path / "old.html")).returncode == 0


def test_report_of_a_multi_gpu_run_shows_each_rank_and_skips_a_nan_point(tmp_path):
    """Events as several processes write them (memory_ranks), with a NaN loss logged on the way."""
    from engine.events import EventWriter
    from engine.profile import dumps, load_named
    from engine.report import render, summarize
    run = tmp_path / "20261201-000000-ddp"
    run.mkdir()
    (run / "run.toml").write_text(dumps(load_named("demo")))
    w = EventWriter(run / "events.jsonl")
    w.write("start", total_steps=4, devices=["NVIDIA H100", "NVIDIA H100"], world_size=2)
    for step, loss in enumerate([2.0, 1.5, float("nan"), 1.2], start=1):
        w.write("step", step=step, total_steps=4, loss=loss, lr=1e-4, grad_norm=0.5, tokens_seen=step * 1000,
                memory={"cuda_peak": 10 << 30}, memory_ranks=[{"rank": 0, "cuda_peak": (10 + step) << 30},
                                                              {"rank": 1, "cuda_peak": (20 + step) << 30}])
    w.write("eval", step=4, eval_loss=1.3)
    w.write("end", status="completed", step=4, total_steps=4, final_loss=1.2)
    w.close()
    s = summarize(run)
    assert s.peak_by_rank == {0: 14 << 30, 1: 24 << 30} and s.tokens == 4000
    text = render.text(s)
    flat = _flat(text)
    assert "peak GPU memory rank 0: 14.0 GiB, rank 1: 24.0 GiB" in flat and "final loss 1.2" in flat
    assert "eval loss 1.3" in flat and "nan" not in text.split("\nloss\n")[1].split("\n\n")[0]
