"""The run builder, driven with keys only: every field of the bundled demo profile reached and changed, saved
as a new profile, read back identical, and launched as a real detached run that the dashboard focuses."""
from __future__ import annotations

import json
import time

import pytest

from engine import rundir
from engine.launch import stop
from engine.profile import load
from engine.profile.schema import SECTIONS
from tuiapp.builder.form import TOP, fields_of

from .builder_helpers import UNSET, BuilderHost, builder, editor, set_by_keys
from .helpers import await_until, DATA, TINY_MODEL
from .tui_helpers import drive, screen_text, wait_text

# A new value for every field of a LoRA profile, chosen so the run it makes is short on a CPU. Fields of
# other methods (QLoRA's quantisation) are hidden for LoRA; test_method_switch_shows_and_hides reaches them.
NEW = {
    (TOP, "description"): "made with keys only",
    ("model", "name_or_path"): str(TINY_MODEL),
    ("model", "revision"): "main",
    ("model", "trust_remote_code"): False,
    ("data", "path"): str(DATA / "alpaca.jsonl"),
    ("data", "format"): "alpaca",
    ("data", "split"): "train",
    ("data", "eval_split"): "",
    ("data", "eval_fraction"): "0.1",
    ("data", "max_samples"): "120",
    ("data", "seed"): "7",
    ("data", "columns"): "{}",
    ("data", "max_bad_fraction"): "0.2",
    ("data", "reasoning"): "keep",
    ("method", "type"): "lora",
    ("method", "lora_r"): "4",
    ("method", "lora_alpha"): "8",
    ("method", "lora_dropout"): "0.1",
    ("method", "target_modules"): '["q_proj", "v_proj"]',
    ("method", "use_dora"): False,
    ("method", "use_rslora"): True,
    ("training", "epochs"): "2.0",
    ("training", "max_steps"): "4",
    ("training", "micro_batch"): "4",
    ("training", "grad_accum"): "1",
    ("training", "effective_batch"): "0",
    ("training", "allow_shorter_seq_len"): True,
    ("training", "grow_back_after"): "5",
    ("training", "learning_rate"): "0.005",
    ("training", "scheduler"): "linear",
    ("training", "warmup_ratio"): "0.1",
    ("training", "weight_decay"): "0.01",
    ("training", "max_grad_norm"): "0.5",
    ("training", "max_seq_len"): "128",
    ("training", "packing"): False,
    ("training", "completion_only_loss"): True,
    ("training", "gradient_checkpointing"): True,
    ("training", "optimizer"): "adamw_torch",
    ("training", "seed"): "3",
    ("training", "precision"): "auto",
    ("training", "logging_steps"): "1",
    ("training", "eval_steps"): "2",
    ("training", "save_steps"): "2",
    ("training", "save_total_limit"): "2",
    ("training", "on_nan"): "stop",
    ("output", "runs_root"): "",
    ("output", "merge"): False,
    ("distributed", "gpus"): "",
    ("distributed", "strategy"): "auto",
    ("distributed", "processes"): "1",
    ("distributed", "nnodes"): "1",
    ("distributed", "node_rank"): "0",
    ("distributed", "rdzv_endpoint"): "",
    ("notify", "enabled"): False,
    ("notify", "on"): "",
    ("notify", "command"): "",
    ("notify", "eval_rising"): "0",
}

# What the saved file must hold, as Profile.to_dict() gives it.
EXPECTED = {
    "name": "keys-only",
    "description": "made with keys only",
    "model": {"name_or_path": str(TINY_MODEL), "revision": "main", "trust_remote_code": False},
    "data": {"path": str(DATA / "alpaca.jsonl"), "format": "alpaca", "split": "train", "eval_split": "",
             "eval_fraction": 0.1, "max_samples": 120, "seed": 7, "columns": {}, "max_bad_fraction": 0.2,
             "reasoning": "keep"},
    "method": {"type": "lora", "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
               "target_modules": ["q_proj", "v_proj"], "use_dora": False, "use_rslora": True},
    "training": {"epochs": 2.0, "max_steps": 4, "micro_batch": 4, "grad_accum": 1, "effective_batch": 0,
                 "allow_shorter_seq_len": True, "grow_back_after": 5, "learning_rate": 0.005, "scheduler": "linear",
                 "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5, "max_seq_len": 128,
                 "packing": False, "completion_only_loss": True, "gradient_checkpointing": True,
                 "optimizer": "adamw_torch", "seed": 3, "precision": "auto", "on_nan": "stop", "logging_steps": 1,
                 "eval_steps": 2,
                 "save_steps": 2, "save_total_limit": 2},
    "output": {"runs_root": "", "merge": False},
    "distributed": {"gpus": "", "strategy": "auto", "processes": 1, "nnodes": 1, "node_rank": 0, "rdzv_endpoint": ""},
    "notify": {"enabled": False, "on": "", "command": "", "eval_rising": 0},
}


def test_every_schema_field_is_in_the_form():
    # The form is generated from the schema: the table above and the schema must list the same fields.
    schema = {(s, k) for s in (TOP, *SECTIONS) for k, meta in fields_of(s) if not meta["methods"]
              or "lora" in meta["methods"]}
    assert schema == set(NEW), f"update NEW: {schema ^ set(NEW)}"


@pytest.mark.slow
def test_fill_save_as_read_back_and_launch_with_keys_only(home, tmp_path):
    runs = tmp_path / "runs"
    app = BuilderHost("demo", runs_root=runs)
    visited: list[tuple[str, str]] = []

    async def scenario(pilot):
        await wait_text(pilot, "demo", "messages format")
        screen = builder(app)
        assert app.focused.id == "rb-pick"
        # Walk the form in order with tab (and ↓ every other field, which must do the same), setting each
        # field as it gets focus.
        order = [k for k, row in screen.form.rows.items() if row.display]
        for i, key in enumerate(order):
            await pilot.press("tab" if i % 2 == 0 else "down")
            widget = editor(app, *key)
            await set_by_keys(pilot, widget, NEW[key])
            visited.append(key)
            assert key not in screen.form.errors, (key, screen.form.errors[key])
        # And back: shift+tab and ↑ move to the previous field.
        await pilot.press("shift+tab")
        assert app.focused is editor(app, *order[-2])
        await pilot.press("up")
        assert app.focused is editor(app, *order[-3])
        await pilot.pause(0.5)
        assert not screen.form.errors and not screen.form.problems, (screen.form.errors, screen.form.problems)
        assert "unsaved edits" in screen_text(app)

        # Save as a new profile: ctrl+n, a name, enter, then y in the confirmation.
        await pilot.press("ctrl+n")
        await wait_text(pilot, "Save as a new profile named")
        await pilot.press("ctrl+u", *"keys-only", "enter")
        text = await wait_text(pilot, "keys-only.toml?", "Comments and layout are kept")
        assert "Left out" not in text
        await pilot.press("y")
        saved = home.parent / "config" / "tunetop" / "profiles" / "keys-only.toml"
        assert await await_until(pilot, saved.exists, timeout=10)
        assert await await_until(pilot, lambda: screen.opened.path == saved and not screen.dirty, timeout=10)
        assert "unsaved edits" not in screen_text(app)
        assert load(saved).to_dict() == EXPECTED
        assert saved.read_text().startswith("# The demo:"), "the demo's comments were kept in the copy"

        # Launch from it: ctrl+r, y; the builder closes with the run directory.
        await pilot.press("ctrl+r")
        await wait_text(pilot, "Launch a detached run of keys-only?")
        await pilot.press("y")
        assert await await_until(pilot, lambda: app.result is not UNSET, timeout=20)

    drive(app, (100, 30), scenario)
    assert visited == [k for k in NEW]
    run_dir = app.result
    assert run_dir is not None and run_dir.parent == runs
    try:
        frozen = rundir.load_profile(run_dir)
        assert {k: v for k, v in frozen.to_dict().items()} == EXPECTED
        start = _wait_event(run_dir, "start", 80)
        assert start["profile"] == "keys-only" and start["method"] == "lora"
    finally:
        if rundir.alive_pid(run_dir) is not None:
            try:
                stop(run_dir)
            except Exception:
                pass
        deadline = time.time() + 60
        while rundir.alive_pid(run_dir) is not None and time.time() < deadline:
            time.sleep(0.3)
        assert rundir.alive_pid(run_dir) is None, "the engine did not exit"


def _wait_event(run_dir, kind: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    path = run_dir / rundir.EVENTS
    while time.time() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("type") == kind:
                    return event
                if event.get("type") == "end" and kind != "end":
                    raise AssertionError(f"run ended before {kind}: {event}\n{(run_dir / rundir.LOG).read_text()}")
        time.sleep(0.3)
    raise AssertionError(f"no {kind} event after {timeout}s:\n{(run_dir / rundir.LOG).read_text()[-3000:]}")
