"""What the CPU benchmarks share: a model shaped like the tiny one but wider, so a step is more than overhead."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_model(hidden: int, folder: Path, layers: int = 4) -> Path:
    """A random-init (seed 0) copy of assets/tiny-llama with `hidden` width and `layers` layers, saved to folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    tiny = ROOT / "assets" / "tiny-llama"
    cfg = AutoConfig.from_pretrained(tiny)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = hidden, hidden * 3, layers
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(folder)
    return folder
