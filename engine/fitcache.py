"""The fit cache: what micro-batch fitted (and what did not) for one shape of run on one kind of GPU.

File: paths.data_home()/fitcache.json. A shape is (model, method, quantisation, precision, sequence length,
packing, LoRA rank and targets, optimizer, GPU name and memory); for each gradient-checkpointing mode it
keeps the largest rows-per-pass that ran ("fits") and the smallest that ran out of memory ("fails"). The
engine reads it before its probe, so the next run of the same shape starts at the right size without an
out-of-memory error, and writes it after the probe and after every backoff. Light: no torch.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from . import paths

FILE = "fitcache.json"
VERSION = 1


def cache_path() -> Path:
    return paths.data_home() / FILE


def shape_key(profile, device_name: str, device_memory: int, simulated_limit: int | None = None) -> dict:
    m, t = profile.method, profile.training
    key = {
        "model": profile.model.name_or_path, "revision": profile.model.revision, "method": m.type,
        "precision": t.precision, "max_seq_len": t.max_seq_len, "packing": t.packing,
        "optimizer": t.optimizer, "device": device_name, "device_memory": int(device_memory),
    }
    if m.type in ("lora", "qlora"):
        targets = m.target_modules if isinstance(m.target_modules, str) else sorted(m.target_modules)
        key.update(lora_r=m.lora_r, targets=targets, use_dora=m.use_dora)
    if m.type == "qlora":
        key.update(quant_type=m.quant_type, double_quant=m.double_quant, compute_dtype=m.compute_dtype)
    if simulated_limit is not None:
        key["simulated_oom_tokens"] = simulated_limit  # test hook runs never mix with real ones
    return key


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _mode(gradient_checkpointing: bool) -> str:
    return "checkpointing" if gradient_checkpointing else "plain"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("entries"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"version": VERSION, "entries": {}}


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: last writer wins
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def lookup(key: dict, gradient_checkpointing: bool) -> dict:
    """{"fits": rows or None, "fails": rows or None} for this shape and checkpointing mode."""
    entry = _read(cache_path())["entries"].get(_key_text(key), {})
    found = entry.get(_mode(gradient_checkpointing), {})
    return {"fits": found.get("fits"), "fails": found.get("fails")}


def record(key: dict, gradient_checkpointing: bool, *, fits: int | None = None, fails: int | None = None) -> None:
    """Remember a size that ran (fits) or ran out of memory (fails). Best effort: never raises."""
    path = cache_path()
    try:
        with _locked(path):
            data = _read(path)
            entry = data["entries"].setdefault(_key_text(key), {"key": key})
            mode = entry.setdefault(_mode(gradient_checkpointing), {})
            if fails is not None:
                mode["fails"] = min(fails, mode.get("fails") or fails)
                if mode.get("fits") is not None and mode["fits"] >= mode["fails"]:
                    mode["fits"] = None  # contradicted: a size that ran once failed later
            if fits is not None and (mode.get("fails") is None or fits < mode["fails"]):
                mode["fits"] = max(fits, mode.get("fits") or 0)
            entry["updated"] = round(time.time(), 1)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError:
        pass
