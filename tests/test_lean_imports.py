"""Which runs keep bitsandbytes out of their process (engine/train/lean_imports.py); the live engine check is
in test_detach.py, and the QLoRA runs of test_engine_e2e.py train with it."""
from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from engine.profile import load_named
from engine.profile.schema import OPTIMIZERS
from engine.train.lean_imports import keep_out_bitsandbytes, needs_bitsandbytes


@pytest.mark.parametrize("method", ["qlora", "lora", "full"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_only_4_bit_loading_and_bitsandbytes_optimizers_need_it(method, optimizer):
    profile = load_named("demo")
    profile.method.type, profile.training.optimizer = method, optimizer
    expected = method == "qlora" or "8bit" in optimizer or optimizer.startswith("paged_")
    assert needs_bitsandbytes(profile) is expected


def test_too_late_once_transformers_is_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)
    monkeypatch.setitem(sys.modules, "transformers", sys.modules.get("transformers") or types.ModuleType("transformers"))
    assert keep_out_bitsandbytes() is False and "bitsandbytes" not in sys.modules


def test_kept_out_it_looks_not_installed(monkeypatch):
    # What peft (a guarded import) and transformers/accelerate (importlib.util.find_spec) then see.
    monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)
    monkeypatch.delitem(sys.modules, "transformers", raising=False)
    assert keep_out_bitsandbytes() is True
    with pytest.raises(ImportError):
        import bitsandbytes  # noqa: F401
    assert importlib.util.find_spec("bitsandbytes") is None
