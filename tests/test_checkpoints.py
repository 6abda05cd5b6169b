"""engine/checkpoints.py on hand-made checkpoint folders (no training, no torch): which checkpoint a resume
takes, what it says about the others, and what the rotation may delete."""
from __future__ import annotations

import json
import struct
import zipfile

import pytest

from engine import checkpoints as ck


def torch_file(path):
    with zipfile.ZipFile(path, "w") as z:   # torch.save writes a zip archive
        z.writestr("archive/data.pkl", b"x" * 64)


def safetensors(path, nbytes=32):
    header = json.dumps({"w": {"dtype": "F32", "shape": [nbytes // 4], "data_offsets": [0, nbytes]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * nbytes)


def make(run_dir, step, marker=True):
    folder = run_dir / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 10}))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch_file(folder / name)
    safetensors(folder / "adapter_model.safetensors")
    if marker:
        ck.write_marker(folder, step)
    return folder


def test_newest_complete_wins_and_unfinished_ones_are_named(tmp_path):
    make(tmp_path, 2)
    make(tmp_path, 4)
    make(tmp_path, 6, marker=False)
    (tmp_path / "checkpoints" / ".tmp-checkpoint-8").mkdir()
    sel = ck.select(tmp_path)
    assert sel.path.name == "checkpoint-4" and sel.step == 4 and not sel.fresh_optimizer
    assert sel.notes == ["checkpoint-6/COMPLETE is missing (the save did not finish): not resumable, "
                         "falling back to the previous checkpoint"]
    assert ck.last_checkpoint(tmp_path).name == "checkpoint-4"
    assert ck.max_steps_of(sel.path) == (4, 10)


@pytest.mark.parametrize("damage,named", [
    (lambda f: (f / "adapter_model.safetensors").write_bytes((f / "adapter_model.safetensors").read_bytes()[:40]),
     "adapter_model.safetensors has"),
    (lambda f: (f / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    (lambda f: (f / "rng_state.pth").write_bytes(b"not a zip"), "rng_state.pth has"),
])
def test_a_damaged_file_falls_back_naming_it(tmp_path, damage, named):
    make(tmp_path, 2)
    damage(make(tmp_path, 4))
    sel = ck.select(tmp_path)
    assert sel.path.name == "checkpoint-2"
    assert len(sel.notes) == 1 and sel.notes[0].startswith(f"checkpoint-4/{named}")


def test_a_rewritten_file_of_the_same_size_is_caught_by_its_structure(tmp_path):
    make(tmp_path, 2)
    folder = make(tmp_path, 4)
    size = (folder / "trainer_state.json").stat().st_size
    (folder / "trainer_state.json").write_text("{" + " " * (size - 1))
    sel = ck.select(tmp_path)
    assert sel.path.name == "checkpoint-2" and "checkpoint-4/trainer_state.json does not parse" in sel.notes[0]


def test_a_missing_optimizer_is_an_error_unless_reset(tmp_path):
    make(tmp_path, 2)
    (make(tmp_path, 4) / "optimizer.pt").unlink()
    with pytest.raises(ck.MissingOptimizerState) as info:
        ck.select(tmp_path)
    assert "checkpoint-4/optimizer.pt is missing" in info.value.message and "--reset-optimizer" in info.value.hint
    sel = ck.select(tmp_path, reset_optimizer=True)
    assert sel.path.name == "checkpoint-4" and sel.fresh_optimizer and "fresh optimizer" in sel.notes[0]


def test_rotation_never_deletes_the_last_good_checkpoint(tmp_path):
    make(tmp_path, 2)
    make(tmp_path, 4)
    broken = make(tmp_path, 6)
    (broken / "trainer_state.json").write_text("{")
    make(tmp_path, 1, marker=False)
    (tmp_path / "checkpoints" / ".tmp-checkpoint-8").mkdir()
    removed = {p.name for p in ck.rotate(tmp_path / "checkpoints", 1)}
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["checkpoint-4", "checkpoint-6"]     # the newest, and the newest that loads
    assert removed == {"checkpoint-2", "checkpoint-1", ".tmp-checkpoint-8"}
