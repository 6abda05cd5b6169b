"""Shared fixtures: an isolated TUNETOP_HOME, profiles written on the fly, fake engines cleaned up after.

Constants and helper functions (TINY_MODEL, merged, run_cli, wait_until ...) live in tests/helpers.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before torch is imported by any test: see engine/launch.py (spinning OpenMP threads on a shared CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import schedule  # noqa: E402
from .helpers import ROOT, merged, toml_text  # noqa: E402


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): two workers for the suite or several files (the machine the suite
    is sized for has two cores); none for one file, node ids or -k, where starting two workers (each
    collecting again) costs more than it saves. PYTEST_XDIST_AUTO_NUM_WORKERS=N overrides; `-n 0` is serial."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    args = [str(arg) for arg in config.args]
    narrow = (config.getoption("keyword") or any("::" in arg for arg in args)
              or (len(args) == 1 and args[0].endswith(".py")))
    return 0 if narrow else 2


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n auto --dist loadgroup`, pyproject's addopts), tests that share a module- or
    session-scoped fixture (a trained run, a loaded model) run in one worker, so the fixture is built once
    rather than once per worker. Runs before xdist reads the groups (tryfirst)."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        if defs is None:
            continue
        for name in item.fixturenames:
            fixturedefs = defs.name2fixturedefs.get(name)
            if not fixturedefs or fixturedefs[-1].baseid in ("", None):
                continue      # pytest's own fixtures (tmp_path_factory, ...) cost nothing to share
            scope = fixturedefs[-1].scope
            if scope == "module":
                item.add_marker(pytest.mark.xdist_group(item.module.__name__))
                break
            if scope in ("package", "session"):
                item.add_marker(pytest.mark.xdist_group(f"fixture-{name}"))
                break
    # Longest work first (tests/schedule.py): the workers collect, the controller hands out units in their
    # order (pyproject's --no-loadscope-reorder keeps xdist to it). A serial run keeps the file order.
    if hasattr(config, "workerinput"):
        items[:] = schedule.longest_first(items, schedule.load())


def pytest_configure(config):
    # The suite starts a few hundred interpreters (engines, the CLI, the app in tmux), each importing tunetop's
    # own modules. With PYTHONDONTWRITEBYTECODE set (as on this project's CI image) none of them caches
    # bytecode, so each compiled ~20k lines again (0.1-0.2 s per process; what a user's install caches on its
    # first run). Compiling once here, before any of them starts, lets them all read the cache; compileall
    # writes whatever that variable says and skips files whose cache is current.
    if not hasattr(config, "workerinput"):
        import compileall
        for package in ("engine", "tuiapp", "tests"):
            compileall.compile_dir(str(ROOT / package), quiet=1)
    recorder = schedule.recorder_from_env()
    if recorder is not None:
        config.pluginmanager.register(recorder, "tunetop-durations")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private TUNETOP_HOME (runs, fit cache) and XDG config dir for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("TUNETOP_HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return h


@pytest.fixture
def make_profile(tmp_path):
    """make_profile(name, overrides) writes BASE + overrides (or `text` as given) to tmp_path/NAME.toml."""
    def make(name: str = "t", overrides: dict | None = None, text: str | None = None) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text if text is not None else toml_text(merged(overrides)))
        return path
    return make


@pytest.fixture
def fake_engine():
    """fake_engine(run_dir) starts a sleeping process recorded as the run's engine (it holds the run's lock
    and its pid file names it), so the run counts as running; every one started is killed after the test."""
    from .tui_helpers import fake_engine as start

    started = []

    def make(run_dir: Path):
        proc = start(run_dir)
        started.append(proc)
        return proc
    yield make
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def overnight_runs():
    """Five real engine runs built once (tests/overnight_runs.py: completed with OOM backoffs and a stall, NaN
    stop, NaN warn, stopped, failed) that the notify, report, compare and history tests read. Session scope
    under one name: the grouping hook above keeps every test that uses it in one xdist worker."""
    from .overnight_runs import overnight
    return overnight()


@pytest.fixture
def o(overnight_runs):
    return overnight_runs
