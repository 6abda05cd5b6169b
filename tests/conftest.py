"""Shared fixtures: an isolated TUNETOP_HOME, profiles written on the fly, fake engines cleaned up after.

Constants and helper functions (TINY_MODEL, merged, run_cli, wait_until ...) live in tests/helpers.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before torch is imported by any test: see engine/launch.py (spinning OpenMP threads on a shared CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .helpers import merged, toml_text  # noqa: E402

# Old import paths (`from .conftest import ...`), kept until every test file imports from .helpers.
from .helpers import ASSETS, BASE, DATA, ROOT, TINY_MODEL, run_cli, wait_until  # noqa: E402, F401

wait_for = wait_until


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
