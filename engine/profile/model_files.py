"""Is a local model folder whole? Checked from file headers, never by loading weights.

`tunetop validate`, `tunetop run` and the engine's preflight call `folder_problems` before anything opens
the model, so a cut download or a bad copy is named file by file in a second instead of surfacing as a
library traceback minutes later:

- every file that will be read is a regular file (after symlinks): a FIFO or a device is never opened;
- config.json (or adapter_config.json) parses as a JSON object;
- a tokenizer is there (tokenizer.json, tokenizer.model, vocab.json ... ; not needed for an adapter folder);
- weights are there: every shard a *.index.json lists exists, each .safetensors file is as long as its
  header says (8-byte length, JSON header, the largest tensor end offset), each zip-format .bin has its
  end-of-archive record.
"""
from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

from .validate import Problem

WHERE = "model.name_or_path"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.tiktoken")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# The safetensors format caps its JSON header at 100 MB; config files are kilobytes.
MAX_SAFETENSORS_HEADER = 100_000_000
MAX_JSON_BYTES = 64 << 20
REFETCH = "the download or copy ended early or was damaged: fetch it again (`hf download REPO --local-dir DIR`)"


def folder_problems(folder: Path) -> list[Problem]:
    """Every problem of a local model (or PEFT adapter) folder, each naming its file; [] when it looks whole."""
    odd = [_odd_file(f) for f in sorted(folder.iterdir())] if _is_dir(folder) else []
    problems = [Problem(WHERE, text, "replace it with the real file") for text in odd if text]
    if problems:
        return problems     # nothing below may open a FIFO or a device
    config, adapter = folder / "config.json", folder / "adapter_config.json"
    if config.exists():
        problems += _json_problem(config)
    elif adapter.exists():
        problems += _json_problem(adapter)
    else:
        return [Problem(WHERE, f"{folder} is not a model folder (no config.json in it)",
                        "point it at the folder that holds config.json and the weights")]
    if config.exists() and not any((folder / name).exists() for name in TOKENIZER_FILES):
        problems.append(Problem(WHERE, f"{folder} has no tokenizer files (none of {', '.join(TOKENIZER_FILES[:4])}"
                                ", ...)", "save the tokenizer beside the model (tokenizer.save_pretrained(folder)) "
                                "or copy the tokenizer files of the model it came from"))
    problems += _weights_problems(folder, adapter_only=not config.exists())
    return problems


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _odd_file(path: Path) -> str | None:
    """Why the engine must not open this entry, or None (regular files, folders, dangling links are fine:
    a dangling link is reported below when the file matters)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket")
    via = f" (a symlink to {os.path.realpath(path)})" if path.is_symlink() else ""
    return f"{path}{via} is {kind}, not a regular file"


def _json_problem(path: Path) -> list[Problem]:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            return [Problem(WHERE, f"{path} is {size >> 20} MiB, far too big for a model's JSON config", REFETCH)]
        data = json.loads(path.read_bytes())
    except OSError as exc:
        return [Problem(WHERE, f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions")]
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        return [Problem(WHERE, f"{path} is not valid JSON{where}", REFETCH)]
    if not isinstance(data, dict):
        return [Problem(WHERE, f"{path} is not a JSON object", REFETCH)]
    return []


def _weights_problems(folder: Path, adapter_only: bool) -> list[Problem]:
    out: list[Problem] = []
    for name in INDEXES:
        index = folder / name
        if not index.exists():
            continue
        bad = _json_problem(index)
        if bad:
            out += bad
            continue
        weight_map = json.loads(index.read_bytes()).get("weight_map")
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        for shard in shards:
            if not isinstance(shard, str) or not (folder / shard).is_file():
                out.append(Problem(WHERE, f"{folder / str(shard)} is missing (listed in {name})", REFETCH))
    weights = [f for f in sorted(folder.iterdir()) if f.suffix in WEIGHT_SUFFIXES and f.name not in INDEXES
               and not f.name.startswith(("training_args", "optimizer", "scheduler", "rng_state"))]
    if not weights and not out:
        what = "adapter weights (adapter_model.safetensors)" if adapter_only else "weights (*.safetensors or *.bin)"
        out.append(Problem(WHERE, f"{folder} has no {what}", REFETCH))
    for f in weights:
        text = _safetensors_problem(f) if f.suffix == ".safetensors" else _zip_problem(f)
        if text:
            out.append(Problem(WHERE, text, REFETCH))
    return out


def _safetensors_problem(path: Path) -> str | None:
    """Reads the 8-byte header length and the JSON header only; compares the tensors' extent with the size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path} is cut short ({size} bytes: not even a safetensors header)"
            n = int.from_bytes(head, "little")
            if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
                return f"{path} is cut short or not a safetensors file (its header claims {n} bytes, the file " \
                       f"holds {size})"
            header = json.loads(f.read(n))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    except (ValueError, RecursionError):
        return f"{path} has an unreadable header (not a safetensors file, or damaged)"
    if not isinstance(header, dict):
        return f"{path} has an unreadable header (not a safetensors file, or damaged)"
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return f"{path} has an unreadable header (not a safetensors file, or damaged)"
    if 8 + n + end > size:
        return f"{path} is truncated: its tensors need {8 + n + end} bytes, the file holds {size}"
    return None


def _zip_problem(path: Path) -> str | None:
    """torch.save writes zip archives (since torch 1.6); a cut one has lost its end-of-archive record. Older
    pickle files are not zips and are left to the loader."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic[:2] != b"PK":
            return None if magic else f"{path} is empty"
        return None if zipfile.is_zipfile(path) else f"{path} is cut short (its zip end record is missing)"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
