"""model_parallel's device map, computed the way transformers computes it at load (device_map="balanced"):
accelerate's get_balanced_memory, then infer_auto_device_map, over the model instantiated on the meta
device (no memory, no weights), with a budget per GPU. QLoRA's Linear weights are sized as 4-bit
(accelerate's CustomDtype.INT4, what transformers' bitsandbytes quantizer asks for); embeddings, norms and
lm_head as 16-bit.

Heavy (torch, transformers, accelerate), so light callers run it in a subprocess
(engine/distributed/device_map.py):

    python -m engine.train.device_map CONFIG_JSON_PATH METHOD BUDGET_BYTES [BUDGET_BYTES ...]

prints {"layers": [[first, last] per GPU], "map": {module: device}} as JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def infer(config: dict, method: str, budgets: list[int]) -> dict:
    import torch
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import CustomDtype, get_balanced_memory
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**config)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(cfg)
    dtype = CustomDtype.INT4 if method == "qlora" else torch.bfloat16
    # Only decoder Linears are quantized: everything else stays 16-bit.
    special = {} if method != "qlora" else {
        name: torch.bfloat16 for name, p in model.named_parameters() if ".layers." not in name or "norm" in name}
    no_split = list(model._no_split_modules or [])
    balanced = get_balanced_memory(model, max_memory={i: b for i, b in enumerate(budgets)},
                                   no_split_module_classes=no_split, dtype=dtype, special_dtypes=special)
    device_map = infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=no_split,
                                       dtype=dtype, special_dtypes=special)
    layers: dict = {}
    for name, device in device_map.items():
        parts = name.split(".")
        if "layers" in parts and parts[parts.index("layers") + 1].isdigit():
            layers.setdefault(device, []).append(int(parts[parts.index("layers") + 1]))
    ranges = [[min(v), max(v)] for _, v in sorted((d, v) for d, v in layers.items() if isinstance(d, int))]
    return {"layers": ranges, "map": dict(device_map)}


if __name__ == "__main__":
    path, method, *budgets = sys.argv[1:]
    print(json.dumps(infer(json.loads(Path(path).read_text()), method, [int(b) for b in budgets])))
