"""A run's summary from its run directory alone (events.jsonl, run.toml, the folders on disk).

Works for finished, failed, stopped, running and interrupted runs, and for runs written before this
module existed: every field an event lacks is simply unknown (None). A resumed run logs the steps after
its checkpoint again; the curves keep the last value logged for each step.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import events as ev
from .. import rundir
from ..errors import TunetopError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OUTPUT_DIRS = ("adapter", "model", "merged")


@dataclass
class Point:
    step: int
    tokens: int | None
    value: float


@dataclass
class RunSummary:
    run_id: str
    path: Path
    status: str
    profile: str = ""
    model: str = ""
    method: str = ""
    device: str = ""
    devices: list = field(default_factory=list)
    precision: str = ""
    world_size: int | None = None
    started: float | None = None
    ended: float | None = None
    step: int = 0
    total_steps: int | None = None
    tokens: int | None = None
    train_time_s: float = 0.0        # sum of the segments' step spans (excludes loading and waiting)
    loss: list = field(default_factory=list)          # Point
    eval_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    tokens_per_s: list = field(default_factory=list)
    backoffs: list = field(default_factory=list)      # (step, message)
    checkpoints: list = field(default_factory=list)   # (step, relative path, exists, bytes)
    outputs: list = field(default_factory=list)       # (relative path, bytes)
    peak_cuda: int | None = None
    peak_by_rank: dict = field(default_factory=dict)  # rank -> peak CUDA bytes (several processes: memory_ranks)
    peak_rss: int | None = None
    micro_batch: int | None = None
    grad_accum: int | None = None
    effective_batch: int | None = None
    segments: int = 0                 # start events: 1 + resumes and relaunches
    warnings: list = field(default_factory=list)
    error: str = ""
    hint: str = ""
    nan: bool = False
    config: dict = field(default_factory=dict)        # run.toml as written (raw TOML tables)

    @property
    def wall_s(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)

    @property
    def final_loss(self) -> float | None:
        return self.loss[-1].value if self.loss else None

    @property
    def final_eval_loss(self) -> float | None:
        return self.eval_loss[-1].value if self.eval_loss else None

    @property
    def best_eval(self) -> Point | None:
        finite = [p for p in self.eval_loss if math.isfinite(p.value)]
        return min(finite, key=lambda p: p.value) if finite else None

    @property
    def mean_tokens_per_s(self) -> float | None:
        if self.tokens and self.train_time_s > 0:
            return self.tokens / self.train_time_s
        values = [p.value for p in self.tokens_per_s if math.isfinite(p.value)]
        return sum(values) / len(values) if values else None

    @property
    def disk_bytes(self) -> int:
        return rundir.disk_use(self.path)


def summarize(run_dir: Path, require_steps: bool = False) -> RunSummary:
    run_dir = Path(run_dir)
    state = rundir.read_state(run_dir)
    s = RunSummary(run_id=run_dir.name, path=run_dir, status=state.status, profile=state.profile,
                   model=state.model, method=state.method)
    s.config = read_config(run_dir)
    steps: dict[int, dict] = {}
    evals: dict[int, float] = {}
    seg_first: float | None = None
    seg_last: float | None = None
    for e in ev.read_all(run_dir / rundir.EVENTS):
        kind, t = e.get("type"), e.get("t")
        if _num(t):
            s.started = t if s.started is None else s.started
            s.ended = t
        if kind == "start":
            s.segments += 1
            if seg_first is not None and seg_last is not None:
                s.train_time_s += seg_last - seg_first
            seg_first = seg_last = None
            for key in ("device", "precision", "world_size", "micro_batch", "grad_accum", "effective_batch"):
                if e.get(key) is not None:
                    setattr(s, key, e[key])
            if isinstance(e.get("devices"), list):
                s.devices = [str(d) for d in e["devices"]]
            s.total_steps = _int(e.get("total_steps")) or s.total_steps
        elif kind == "step" and _int(e.get("step")) is not None:
            steps[e["step"]] = e
            if _num(t):
                seg_first = t if seg_first is None else seg_first
                seg_last = t
            mem = e.get("memory") if isinstance(e.get("memory"), dict) else {}
            if _num(mem.get("cuda_peak")):
                s.peak_cuda = max(s.peak_cuda or 0, int(mem["cuda_peak"]))
            if _num(mem.get("rss")):
                s.peak_rss = max(s.peak_rss or 0, int(mem["rss"]))
            for r in e.get("memory_ranks") or []:
                if isinstance(r, dict) and _int(r.get("rank")) is not None and _num(r.get("cuda_peak")):
                    s.peak_by_rank[r["rank"]] = max(s.peak_by_rank.get(r["rank"], 0), int(r["cuda_peak"]))
        elif kind == "eval" and _int(e.get("step")) is not None and _num(e.get("eval_loss")):
            evals[e["step"]] = float(e["eval_loss"])
        elif kind == "backoff":
            s.backoffs.append((_int(e.get("step"), 0), str(e.get("message") or e.get("action") or "backoff")))
            after = e.get("after") or {}
            s.micro_batch = after.get("micro_batch", s.micro_batch)
            s.grad_accum = after.get("grad_accum", s.grad_accum)
        elif kind == "checkpoint" and _int(e.get("step")) is not None:
            s.checkpoints = [c for c in s.checkpoints if c[0] != e["step"]]
            rel = str(e.get("path") or f"{rundir.CHECKPOINTS}/checkpoint-{e['step']}")
            s.checkpoints.append((e["step"], rel))
        elif kind == "log" and e.get("level") in ("warning", "error"):
            s.warnings.append(str(e.get("message", "")))
            s.nan = s.nan or e.get("code") == "nan_loss"
        elif kind == "end":
            s.error, s.hint = str(e.get("error") or ""), str(e.get("hint") or "")
            s.total_steps = _int(e.get("total_steps")) or s.total_steps
    if seg_first is not None and seg_last is not None:
        s.train_time_s += seg_last - seg_first
    _fold_steps(s, steps, evals)
    s.checkpoints = [(step, rel, (run_dir / rel).is_dir(), rundir.disk_use(run_dir / rel)) for step, rel in
                     sorted(s.checkpoints)]
    s.outputs = [(name, rundir.disk_use(run_dir / name)) for name in OUTPUT_DIRS if (run_dir / name).is_dir()]
    if require_steps and not s.loss:
        why = f" ({s.status}: {s.error})" if s.error else f" (it is {s.status})"
        raise TunetopError(f"run {s.run_id} has no training steps to report{why}",
                           f"`tunetop logs {s.run_id}` shows what the engine did")
    return s


def _fold_steps(s: RunSummary, steps: dict, evals: dict) -> None:
    tokens_at: dict[int, int] = {}
    for step in sorted(steps):
        e = steps[step]
        tokens = _int(e.get("tokens_seen"))
        if tokens is not None:
            tokens_at[step] = tokens
            s.tokens = tokens
        for name, key in (("loss", "loss"), ("lr", "lr"), ("grad_norm", "grad_norm"),
                          ("tokens_per_s", "tokens_per_s")):
            if _num(e.get(key)):
                getattr(s, name).append(Point(step, tokens, float(e[key])))
        s.step = max(s.step, step)
        s.total_steps = _int(e.get("total_steps")) or s.total_steps
    for step in sorted(evals):
        tokens = tokens_at.get(step) or next((tokens_at[k] for k in sorted(tokens_at, reverse=True) if k <= step),
                                             None)
        s.eval_loss.append(Point(step, tokens, evals[step]))


def read_config(run_dir: Path) -> dict:
    """run.toml as raw tables (old runs whose keys the schema no longer knows still compare)."""
    try:
        return tomllib.loads((Path(run_dir) / rundir.RUN_TOML).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def flat_config(config: dict) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[key] = value
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v, default=None):
    return v if isinstance(v, int) and not isinstance(v, bool) else default
