"""Shared fixtures: an isolated TUNETOP_HOME, profiles written on the fly, and ways to run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Before torch is imported by any test: see engine/launch.py (spinning OpenMP threads on a shared CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
TINY_MODEL = ASSETS / "tiny-llama"
DATA = ASSETS / "data"

# The values every test run starts from: the demo profile, made short. Tests override what they study.
BASE = {
    "model": {"name_or_path": str(TINY_MODEL)},
    "data": {"path": str(DATA / "messages.jsonl")},
    "method": {"type": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0},
    "training": {"max_steps": 8, "micro_batch": 4, "grad_accum": 2, "learning_rate": 1e-2,
                 "warmup_ratio": 0.0, "max_seq_len": 128, "gradient_checkpointing": False,
                 "optimizer": "adamw_torch", "save_steps": 4, "scheduler": "constant"},
}


def toml_text(profile: dict) -> str:
    import tomli_w
    return tomli_w.dumps(profile)


def merged(overrides: dict | None) -> dict:
    out = {k: dict(v) for k, v in BASE.items()}
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            out.setdefault(section, {}).update(values)
        else:
            out[section] = values
    for section in list(out):
        if isinstance(out[section], dict):
            out[section] = {k: v for k, v in out[section].items() if v is not None}
    return out


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private TUNETOP_HOME (runs, fit cache) and XDG config dir for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("TUNETOP_HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return h


@pytest.fixture
def make_profile(tmp_path):
    def make(name: str = "t", overrides: dict | None = None, text: str | None = None) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(text if text is not None else toml_text(merged(overrides)))
        return path
    return make


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `tunetop` command in a subprocess (what a user types)."""
    return subprocess.run([sys.executable, "-m", "tuiapp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
