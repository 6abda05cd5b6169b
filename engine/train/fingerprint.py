"""What a run trains on, recorded at its first start: runs/<id>/fingerprint.json (light: hashlib only).

For each local dataset file (a folder of .txt counts file by file): size, mtime and a streaming sha256;
for the frozen run.toml its sha256. A resume compares the files now with the record: a changed dataset
changes the rows and their order, so a "continued" run would be another run under the same name. The
engine refuses it with what changed unless `--accept-changed-data`, which logs a warning event and
records the new fingerprint. Hub datasets are recorded by name only (their files live in the HF cache).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import TunetopError

FILE = "fingerprint.json"
CHUNK = 1 << 20


class ChangedData(TunetopError):
    """The dataset or run.toml differ from what the run started with."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _file(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime": round(st.st_mtime, 3), "sha256": _sha256(path)}


def data_files(profile) -> tuple[list[Path], list[str]]:
    """(local files, hub names) of the profile's data.path."""
    paths = profile.data.path if isinstance(profile.data.path, list) else [profile.data.path]
    files, hub = [], []
    for raw in paths:
        p = Path(str(raw)).expanduser()
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            files.append(p)
        elif raw:
            hub.append(str(raw))
    return files, hub


def compute(run_dir: Path, profile) -> dict:
    files, hub = data_files(profile)
    toml = Path(run_dir) / "run.toml"
    return {"version": 1, "run_toml": {"sha256": _sha256(toml)},
            "data": {str(f.resolve()): _file(f) for f in files}, "hub": hub}


def write(run_dir: Path, fp: dict) -> None:
    path = Path(run_dir) / FILE
    tmp = path.with_name(FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(fp, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(run_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(run_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def changes(old: dict, new: dict) -> list[str]:
    """What differs, in words (empty: the same data and run.toml)."""
    out = []
    if (old.get("run_toml") or {}).get("sha256") != new["run_toml"]["sha256"]:
        out.append("run.toml was edited")
    before, now = old.get("data") or {}, new["data"]
    for path in sorted(set(before) | set(now)):
        a, b = before.get(path), now.get(path)
        if a is None:
            out.append(f"{path} is new")
        elif b is None:
            out.append(f"{path} is gone")
        elif a.get("sha256") != b["sha256"]:
            size = f" ({a.get('size'):,} -> {b['size']:,} bytes)" if a.get("size") != b["size"] else ""
            out.append(f"{path} changed{size}")
    if sorted(old.get("hub") or []) != sorted(new.get("hub") or []):
        out.append(f"hub datasets {old.get('hub')} -> {new.get('hub')}")
    return out


def check(run_dir: Path, profile, resume: bool, accept_changed: bool, log) -> None:
    """First start: record. Resume: compare, and refuse (ChangedData) or warn (accept_changed)."""
    new = compute(run_dir, profile)
    old = read(run_dir) if resume else None
    if old is None:
        if resume:
            log("this run has no fingerprint.json (started by an older tunetop): recording the data as it is now")
        write(run_dir, new)
        return
    diff = changes(old, new)
    if not diff:
        return
    what = "; ".join(diff)
    if not accept_changed:
        raise ChangedData(f"the run's data or configuration changed since it started: {what}",
                          hint=f"put the files back as they were, or pass --accept-changed-data (`tunetop resume "
                               f"{Path(run_dir).name} --accept-changed-data`) to continue anyway: the rows and "
                               "their order then differ from what the first steps trained on")
    log(f"--accept-changed-data: resuming although {what}; the data order changes from here", "warning")
    write(run_dir, new)
