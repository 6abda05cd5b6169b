"""Regenerate report.svg (the loss chart of `tunetop report --format md`), report.txt (the terminal report)
and compare.svg (the dashboard's compare screen at 120x40) from two REAL demo runs on the tiny model that
differ in learning rate. Takes a few minutes on a CPU.

    python assets/screenshots/make_overnight_screenshots.py
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="tunetop-shots-"))
    os.environ.update(TUNETOP_HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "config"))
    demo = (ROOT / "profiles" / "demo.toml").read_text()
    demo = demo.replace('"../assets/', f'"{ROOT}/assets/')
    for name, lr in (("lr-3e-3", "3e-3"), ("lr-1e-3", "1e-3")):
        text = re.sub(r"learning_rate = .*", f"learning_rate = {lr}", demo)
        (tmp / f"{name}.toml").write_text(text)
        subprocess.run([sys.executable, "-m", "tuiapp", "run", str(tmp / f"{name}.toml")], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    from engine import rundir
    from engine.report import render, summarize, write_report
    runs = sorted(rundir.list_runs(), key=lambda p: p.name)
    text = render.text(summarize(runs[0], require_steps=True), width=100)
    (HERE / "report.txt").write_text(text.replace(str(tmp / "home"), "~/.local/share/tunetop"))
    write_report(runs[0], tmp / "report.md", "md")
    shutil.copy(tmp / "report-loss.svg", HERE / "report.svg")
    asyncio.run(_compare_shot(runs, HERE / "compare.svg"))
    shutil.rmtree(tmp, ignore_errors=True)
    print("wrote report.txt, report.svg, compare.svg")


async def _compare_shot(runs, out: Path) -> None:
    from engine import paths
    from engine.telemetry import ScriptedSource
    from tuiapp.app import TunetopApp
    from tuiapp.components.compare_screen import CompareScreen
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=paths.runs_root())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(1.0)
        app.push_screen(CompareScreen(runs))
        for _ in range(100):
            await pilot.pause(0.1)
            if isinstance(app.screen, CompareScreen) and app.screen.loaded:
                break
        await pilot.pause(0.5)
        app.save_screenshot(filename=out.name, path=str(out.parent))


if __name__ == "__main__":
    main()
