"""What many test files share: where things are, the base profile, the real CLI, and waiting for a condition.

Fixtures live in conftest.py (pytest finds them by name); plain constants and functions live here and are
imported (`from .helpers import TINY_MODEL, run_cli, wait_until`), since importing from conftest.py is what
pytest's documentation warns against.

Waiting: `wait_until` polls a plain predicate with sleeps (subprocesses, files, terminals); `await_until`
polls it between Textual pilot pauses, so the app under test keeps running while the test waits.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
TINY_MODEL = ASSETS / "tiny-llama"
DATA = ASSETS / "data"

# The packages the dashboard and the light engine modules must never import (tests/test_architecture.py).
HEAVY = ("torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate")

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
    """BASE with `overrides` laid over it section by section; a value of None removes that key."""
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


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `tunetop` command in a subprocess (what a user types)."""
    return subprocess.run([sys.executable, "-m", "tuiapp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def wait_until(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned) or fail the test after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def await_until(pilot, predicate, timeout: float = 20.0, step: float = 0.1) -> bool:
    """Let a Textual app run (pilot pauses) until `predicate()` holds; False after `timeout` s. Callers
    assert on the result, so the message can say what the screen showed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(step)
        if predicate():
            return True
    return False
