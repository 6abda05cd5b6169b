"""model_parallel's device map from accelerate on the meta-device model, asked of a subprocess
(engine/train/device_map.py does the work; it needs torch, transformers and accelerate, which the CLI and
the dashboard never import)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def infer_in_subprocess(config: dict, method: str, budgets: list[int], timeout: float = 300) -> dict | None:
    """{"layers": [[first, last] per GPU], "map": {...}}, or None when it fails (the even split stands)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        out = subprocess.run([sys.executable, "-m", "engine.train.device_map", f.name, method, *map(str, budgets)],
                             capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    finally:
        Path(f.name).unlink(missing_ok=True)
