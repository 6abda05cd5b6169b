"""Keep bitsandbytes out of the processes that never use it.

peft imports bitsandbytes whenever it is installed (peft/helpers.py tries it at import), and bitsandbytes'
import pulls in torch's inductor compiler. On the 2-core test machine that is 1.3-1.5 s of a LoRA engine's
start-up: importing the engine's trainer modules took 8.6-9.9 s with it and 7.3-8.3 s without (3 fresh
interpreters each). Only 4-bit loading (method "qlora"), bitsandbytes' own optimizers and checkpoints saved
quantized (a `quantization_config` in config.json, e.g. the "-bnb-4bit" uploads, which load through their
quantizer whatever the method) use it; a merge loads the base in 16 or 32 bits and never does.

The mechanism is the import system's own: a None entry in sys.modules makes `import bitsandbytes` raise
ImportError and importlib.util.find_spec return None, which is exactly what peft, transformers and
accelerate see when the package is not installed, so each takes its documented "not available" path. It
must happen before transformers is imported (it records availability once); a process that already
imported bitsandbytes is left alone.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..profile.schema import BITSANDBYTES_OPTIMIZERS, QLORA


def needs_bitsandbytes(profile) -> bool:
    return (profile.method.type in QLORA or profile.training.optimizer in BITSANDBYTES_OPTIMIZERS
            or saved_quantized(profile.model.name_or_path, profile.model.revision))


def saved_quantized(model: str, revision: str | None = None) -> bool:
    """Whether the checkpoint may have been saved quantized. Its config.json is read from the local folder
    or the Hugging Face cache; a model found in neither (it will be downloaded) counts as maybe."""
    from ..estimate.config_source import cached_config, find_config
    try:
        if Path(model).expanduser().exists():
            config = find_config(model, revision).config
        else:
            found = cached_config(model, revision)
            if found is None:
                return True
            config = found.config
    except Exception:   # noqa: BLE001 - unreadable: let the loader decide, with bitsandbytes available
        return True
    return "quantization_config" in config or any(
        isinstance(part, dict) and "quantization_config" in part for part in config.values())


def keep_out_bitsandbytes() -> bool:
    """Make bitsandbytes look not installed to everything imported from now on; False if too late."""
    if sys.modules.get("bitsandbytes") is not None or "transformers" in sys.modules:
        return False
    sys.modules["bitsandbytes"] = None
    return True


def for_run(profile) -> bool:
    """Before a training process's heavy imports: keep bitsandbytes out unless this run needs it."""
    return False if needs_bitsandbytes(profile) else keep_out_bitsandbytes()
