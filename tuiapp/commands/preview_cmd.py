"""`tunetop preview PROFILE [--rows N] [--json]`: the rows exactly as trained.

The work happens in `python -m engine.train.preview` (it needs a tokenizer, which tunetop's CLI never
imports); its output streams straight to the terminal. `engine_summary` is the same analysis as one JSON
object, which `tunetop validate` uses for its token counts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from engine import paths
from engine.errors import TunetopError

SUMMARY_TIMEOUT_S = 600


def register(sub) -> None:
    s = sub.add_parser("preview", help="show the rows exactly as trained (template applied, trained part "
                                       "highlighted) and what happens to every row")
    s.add_argument("profile", help="profile name or path to a .toml file")
    s.add_argument("--rows", type=int, default=3, help="rows to show (default 3)")
    s.add_argument("--json", action="store_true", help="one JSON object per row, then {\"summary\": {...}} "
                                                       "(README: tunetop preview)")
    s.add_argument("--limit", type=int, default=20000, help="rows tokenized for the counts (0 = all; default 20000)")
    s.set_defaults(handler=cmd_preview)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def cmd_preview(args) -> int:
    from engine.profile import load_named
    profile = load_named(args.profile)
    cmd = [sys.executable, "-m", "engine.train.preview", str(profile.source), "--rows", str(max(args.rows, 0)),
           "--limit", str(args.limit)] + (["--jsonl"] if args.json else [])
    sys.stdout.flush()
    return subprocess.run(cmd, cwd=paths.PROJECT_ROOT, env=_env(), stdin=subprocess.DEVNULL).returncode


def engine_summary(source: str, limit: int = 5000) -> dict:
    """The preview's summary for a profile file (never raises for a failed analysis: see "ok"/"error").
    Token figures cover the first `limit` rows of each split (validate stays quick on big datasets; row counts
    always cover every row)."""
    try:
        out = subprocess.run([sys.executable, "-m", "engine.train.preview", source, "--json", "--limit", str(limit)],
                             cwd=paths.PROJECT_ROOT, env=_env(), stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=SUMMARY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "stage": "timeout", "error": f"the token check took over {SUMMARY_TIMEOUT_S} s"}
    lines = out.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {"ok": False, "stage": "crash",
                                                     "error": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    except ValueError:
        return {"ok": False, "stage": "crash", "error": "the token check printed no JSON"}


def raise_if_refused(summary: dict) -> None:
    """The data or template problems the engine would stop on, as the error it would give."""
    if not summary.get("ok") and summary.get("stage") in ("data", "template"):
        raise TunetopError(summary.get("error", "the data cannot be used"), hint=summary.get("hint", ""))


KEEP_FOR_COUNTS = 1000      # validate counts every row but holds at most this many


