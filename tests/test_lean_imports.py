"""Which runs keep bitsandbytes out of their process (engine/train/lean_imports.py); the live engine check is
in test_detach.py, and the QLoRA runs of test_engine_e2e.py train with it."""
from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest

from engine.profile import load_named
from engine.profile.schema import OPTIMIZERS
from engine.train.lean_imports import keep_out_bitsandbytes, needs_bitsandbytes

from .helpers import TINY_MODEL


@pytest.mark.parametrize("method", ["qlora", "lora", "full"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_only_4_bit_loading_and_bitsandbytes_optimizers_need_it(method, optimizer):
    profile = load_named("demo")
    profile.method.type, profile.training.optimizer = method, optimizer
    profile.model.name_or_path = str(TINY_MODEL)   # saved in 32 bits (the demo's is a path relative to the repo)
    expected = method == "qlora" or "8bit" in optimizer or optimizer.startswith("paged_")
    assert needs_bitsandbytes(profile) is expected


def test_a_checkpoint_saved_quantized_keeps_it_whatever_the_method(tmp_path):
    # e.g. the "-bnb-4bit" uploads: transformers loads them through bitsandbytes even for method = "lora".
    saved = tmp_path / "llama-bnb-4bit"
    saved.mkdir()
    config = json.loads((TINY_MODEL / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (saved / "config.json").write_text(json.dumps(config))
    profile = load_named("demo")
    profile.method.type, profile.training.optimizer = "lora", "adamw_torch"
    profile.model.name_or_path = str(TINY_MODEL)
    assert not needs_bitsandbytes(profile)
    profile.model.name_or_path = str(saved)
    assert needs_bitsandbytes(profile)
    # A hub id that is not in the cache will be downloaded, unseen: it might be.
    profile.model.name_or_path = "someone/not-cached-anywhere-7b"
    assert needs_bitsandbytes(profile)


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
