"""The builder's dataset preview: format, rows and bad rows at once (engine.data, pure Python), then tokens
and one example rendered exactly as the model sees it, from `python -m engine.train.preview` in a
subprocess (the dashboard never imports transformers). Both run in thread workers; a newer request
cancels the older one, and a cancelled or timed-out subprocess is killed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textual import work
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static
from textual.worker import get_current_worker

from engine import paths
from engine.data import DataError, load_data
from engine.profile import Profile, dumps
from ..errors_view import error_text

TIMEOUT_S = 120.0
SHOW_BAD = 5
_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")


def hub_refs(profile: Profile) -> list[str]:
    """The data.path entries that name a hub dataset rather than a local file.

    Same rule as engine/data/load.py (_read_source): what exists on disk, or looks like a path, is local.
    A hub dataset is read with the `datasets` library, which the dashboard must never import: those go to
    the preview subprocess only (offline: from the HF cache, never a download)."""
    refs = profile.data.path if isinstance(profile.data.path, list) else [profile.data.path]
    out = []
    for ref in refs:
        p = Path(ref).expanduser()
        if not (p.exists() or p.is_absolute() or ref.startswith((".", "~")) or p.suffix.lower() in _FILE_SUFFIXES):
            out.append(ref)
    return out


def preview_command(profile_file: Path) -> list[str]:
    return [sys.executable, "-m", "engine.train.preview", str(profile_file), "--json"]


def run_preview(profile: Profile, cancelled=lambda: False, timeout: float = TIMEOUT_S) -> dict:
    """Run the preview subprocess on a profile; a dict like its JSON, or {"ok": False, "error": ...}."""
    fd, name = tempfile.mkstemp(prefix="tunetop-preview-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(profile))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(preview_command(Path(name)), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    cwd=paths.PROJECT_ROOT, env=env)
            deadline = time.monotonic() + timeout
            try:
                while proc.poll() is None:
                    if cancelled():
                        return {"ok": False, "cancelled": True, "error": "cancelled"}
                    if time.monotonic() > deadline:
                        return {"ok": False, "stage": "timeout", "error": f"the preview took over {timeout:.0f} s"}
                    time.sleep(0.1)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            out.seek(0)
            err.seek(0)
            text = out.read().decode("utf-8", "replace").strip()
            if proc.returncode != 0 or not text:
                tail = err.read().decode("utf-8", "replace").strip().splitlines()
                return {"ok": False, "stage": "crash",
                        "error": f"the preview process failed: {tail[-1] if tail else f'exit {proc.returncode}'}"}
            try:
                return json.loads(text.splitlines()[-1])
            except ValueError:
                return {"ok": False, "stage": "crash", "error": "the preview process printed no JSON"}
    finally:
        Path(name).unlink(missing_ok=True)


class PreviewPanel(VerticalScroll):
    def __init__(self, tokens: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.tokens = tokens          # False: data part only (tests that do not need the tokenizer)
        self.data: dict | None = None
        self.tok: dict | None = None
        self.phase = "idle"

    def compose(self):
        yield Static("", id="preview-body")

    def request(self, profile: Profile) -> None:
        self.data, self.tok, self.phase = None, None, "reading"
        if not profile.data.path:
            self.workers.cancel_group(self, "preview-data")
            self.workers.cancel_group(self, "preview-tokens")
            self.data = {"ok": False, "error": "no dataset yet: set data.path to see a preview"}
            self._redraw()
            return
        self._redraw()
        hub = hub_refs(profile)
        if hub:
            self.workers.cancel_group(self, "preview-data")
            self._data_done({"ok": False, "hub": True,
                             "error": f"hub dataset {', '.join(hub)}: "
                             + ("read from the Hugging Face cache by the preview process…" if self.tokens else
                                "previewed by `python -m engine.train.preview` (from the HF cache)")})
        else:
            self._read_data(profile)
        if self.tokens:
            self._tokenize(profile)

    @work(thread=True, exclusive=True, group="preview-data", exit_on_error=False)
    def _read_data(self, profile: Profile) -> None:
        try:
            report = load_data(profile.data)
            result = {"ok": True, "format": report.format, "detected": report.detected, "rows": report.total_rows,
                      "train": report.train_count, "eval": report.eval_count, "bad_count": report.bad_count,
                      "bad_rows": [list(b) for b in report.bad_rows[:SHOW_BAD]]}
        except DataError as exc:
            result = {"ok": False, "error": error_text(exc)}
        except Exception as exc:   # an unexpected reader failure still shows, it never kills the app
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._data_done, result)

    def _data_done(self, result: dict) -> None:
        self.data = result
        if self.tok is None:
            self.phase = "tokenizing" if self.tokens and (result.get("ok") or result.get("hub")) else "done"
        self._redraw()

    @work(thread=True, exclusive=True, group="preview-tokens", exit_on_error=False)
    def _tokenize(self, profile: Profile) -> None:
        worker = get_current_worker()
        result = run_preview(profile, lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._tok_done, result)

    def _tok_done(self, result: dict) -> None:
        self.tok, self.phase = result, "done"
        self._redraw()

    def _redraw(self) -> None:
        self.query_one("#preview-body", Static).update(render(self.data, self.tok, self.phase, self.tokens))


def render(data: dict | None, tok: dict | None, state: str, tokens: bool) -> Content:
    parts: list[Content] = []
    line = parts.append
    if data is not None and data.get("hub") and tok is not None and "format" in tok:
        data = {**tok, "ok": True}          # the subprocess read the hub dataset: its counts stand in
    if data is None:
        return Content.styled("reading the dataset…", "$text-muted")
    if data.get("hub") and not data.get("ok"):
        line(Content.styled(data["error"], "$text-muted"))
        if tok is not None and not tok.get("ok") and not tok.get("cancelled"):
            line(Content.assemble(("the dataset cannot be used: ", "bold $error"), tok.get("error", "")))
        return Content("\n").join(parts)
    if not data.get("ok"):
        line(Content.styled("the dataset cannot be used", "bold $error"))
        line(Content(data.get("error", "")))
        return Content("\n").join(parts)
    how = "detected" if data["detected"] else "as set"
    line(Content.assemble((data["format"], "bold"), f" format ({how}) · {data['rows']} rows: {data['train']} train, "
                          f"{data['eval']} eval", (f" · {data['bad_count']} bad" if data["bad_count"] else "",
                                                   "bold $warning")))
    for label, why in data["bad_rows"]:
        line(Content.assemble(("  skipped ", "$warning"), (label, "bold"), f": {why}"))
    if data["bad_count"] > len(data["bad_rows"]):
        line(Content.styled(f"  … and {data['bad_count'] - len(data['bad_rows'])} more", "$text-muted"))
    if not tokens:
        return Content("\n").join(parts)
    if tok is None:
        line(Content.styled("tokenizing (the tokenizer loads in a separate process)…", "$text-muted"))
        return Content("\n").join(parts)
    if not tok.get("ok"):
        if not tok.get("cancelled"):
            line(Content.assemble(("tokens unavailable: ", "bold $warning"), tok.get("error", "")))
        return Content("\n").join(parts)
    limit = tok["max_seq_len"]
    approx = "" if tok.get("tokens_exact", True) else f"≈ (from {tok['counted']} rows) "
    line(Content.assemble(("tokens ", "bold"), f"{approx}{tok['tokens']:,}",
                          f" · per row p50 {tok['p50']} · p90 {tok['p90']} · p99 {tok['p99']} · max {tok['max']}",
                          (f" (max_seq_len {limit})", "$text-muted")))
    if "blocks" in tok:
        line(Content(f"packed into {tok['blocks']} blocks of {limit} tokens; {tok['over']} documents span several"))
    else:
        over = tok["over"]
        checked = "" if tok.get("tokens_exact", True) else f" (of the first {tok['counted']} rows)"
        line(Content.assemble((f"{over} rows would be truncated{checked}", "bold $warning" if over else "$success"),
                              (f", {tok['dropped']} dropped (nothing left to learn)" if tok.get("dropped") else "")))
    if tok.get("fallback_template"):
        line(Content.styled("the tokenizer has no chat template: tunetop's ChatML fallback is used", "$warning"))
    ex = tok.get("example")
    if ex:
        line(Content.assemble(("example", "bold"), (f" (training row {ex['index'] + 1}, {ex['tokens']} tokens; "
                                                    "highlighted = trained, the rest is context)", "$text-muted")))
        line(example_content(ex["text"], ex["spans"], ex.get("cut_at")))
    return Content("\n").join(parts)


def example_content(text: str, spans: list, cut_at: int | None) -> Content:
    """The rendered row, trained spans highlighted, everything past the truncation point struck out."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    for start, end in sorted(spans):
        if start > pos:
            pieces.append((text[pos:start], ""))
        pieces.append((text[start:end], "bold $success underline"))
        pos = max(pos, end)
    if pos < len(text):
        pieces.append((text[pos:], ""))
    out: list[tuple[str, str]] = []
    offset, marked = 0, False
    for chunk, style in pieces:
        end = offset + len(chunk)
        if cut_at is None or end <= cut_at:
            out.append((chunk, style))
        else:
            keep = max(0, cut_at - offset)
            out.append((chunk[:keep], style))
            if not marked:
                out.append(("✂ max_seq_len", "reverse $error"))
                marked = True
            out.append((chunk[keep:], "strike $text-muted"))
        offset = end
    return Content.assemble(*[(c, s) if s else c for c, s in out if c])
