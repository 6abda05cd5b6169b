"""Odd input to profiles never hangs or crashes: paths that are not files, numbers out of any sane range, and
model folders that are cut short. Each refusal names the file or the field and comes at once."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from engine.errors import TunetopError, render_text
from engine.profile import ProfileError, field_problem, load, loads, preflight
from engine.profile.validate import INT_LIMIT, MAX_PROFILE_BYTES, Problem

from .helpers import TINY_MODEL, merged, run_cli, toml_text


def refusal(fn, *args) -> str:
    """Run fn(*args), expect a ProfileError within a few seconds, return what the user reads."""
    t0 = time.monotonic()
    with pytest.raises(ProfileError) as info:
        fn(*args)
    assert time.monotonic() - t0 < 5, "the refusal took too long (was something read or waited on?)"
    return render_text(info.value)


# -- profile paths that are not regular files ---------------------------------------------------------------

def test_a_fifo_as_profile_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    msg = refusal(load, fifo)     # opening it would wait for a writer for ever
    assert str(fifo) in msg and "is a FIFO (named pipe), not a regular file" in msg and "hint:" in msg


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_and_symlinks_to_them_are_refused(tmp_path, device):
    msg = refusal(load, device)
    assert f"{device}: is a character device, not a regular file" in msg
    link = tmp_path / "looks-fine.toml"
    link.symlink_to(device)
    msg = refusal(load, link)
    assert f"{link}: is (a symlink to {device}) a character device" in msg


def test_a_symlink_to_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "p.toml"
    link.symlink_to(fifo)
    msg = refusal(load, link)
    assert f"(a symlink to {fifo}) a FIFO" in msg


def test_a_folder_as_profile_is_refused(tmp_path):
    msg = refusal(load, tmp_path)
    assert f"{tmp_path}: is a folder, not a profile file" in msg


def test_a_huge_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(2 << 30)      # 2 GiB, sparse: costs no disk, and would cost 2 GiB of memory if read
    msg = refusal(load, big)
    assert f"{big}: is 2048.0 MiB; a profile is a small TOML file" in msg
    assert big.stat().st_size > MAX_PROFILE_BYTES


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(toml_text(merged({})).encode() + 'description = "caf\xe9"\n'.encode("latin-1"))
    msg = refusal(load, path)
    assert "latin1.toml: line" in msg and "is not UTF-8 text" in msg and "hint: save the profile as UTF-8" in msg


def test_nesting_past_the_parser_depth_is_an_error_not_a_recursion_error():
    msg = refusal(loads, "description = " + "[" * 100_000 + "]" * 100_000 + "\n", "deep.toml")
    assert "deep.toml: arrays or tables are nested too deeply to read" in msg


def test_the_cli_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    result = run_cli("validate", str(fifo), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is a FIFO (named pipe), not a regular file" in result.stderr and "Traceback" not in result.stderr


# -- numbers ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("section,key,value,expected", [
    ("training", "learning_rate", float("nan"), "expected a finite number, got nan"),
    ("training", "learning_rate", float("inf"), "expected a finite number, got inf"),
    ("training", "max_grad_norm", float("inf"), "expected a finite number, got inf"),
    ("method", "lora_dropout", float("-inf"), "expected a finite number"),
    ("training", "epochs", 10**400, "expected a finite number"),
    ("training", "epochs", 1e300, "expected a number from 0 to 10000"),
    ("training", "seed", 2**32, "expected a whole number from 0 to 4294967295, got 4294967296"),
    ("data", "seed", 2**63, "expected a whole number from 0 to 4294967295"),
    ("method", "lora_alpha", 1_000_000, "expected a whole number from 1 to 8192, got 1000000"),
    ("training", "max_steps", 10**20, f"expected a whole number from 0 to {INT_LIMIT}"),
    ("training", "save_steps", 2**31, f"expected a whole number from 1 to {INT_LIMIT}"),
])
def test_numbers_out_of_any_sane_range_name_the_field(section, key, value, expected):
    text = toml_text(merged({section: {key: value}}))      # tomli-w writes nan, inf and big integers as TOML
    msg = refusal(loads, text, "p.toml")
    assert f"p.toml: {section}.{key}: {expected}" in msg and "hint:" in msg
    problem = field_problem(section, key, value)           # the form's check says the same
    assert problem is not None and expected in problem.message


def test_the_largest_seed_numpy_takes_is_accepted():
    p = loads(toml_text(merged({"training": {"seed": 2**32 - 1}, "data": {"seed": 0}})))
    assert p.training.seed == 2**32 - 1


# -- one error type ------------------------------------------------------------------------------------------

def test_a_profile_error_lists_every_problem_and_keeps_the_hints_apart():
    with pytest.raises(ProfileError) as info:
        loads(toml_text(merged({"training": {"micro_batch": 0, "seed": -1}})), source="p.toml")
    exc = info.value
    assert isinstance(exc, TunetopError) and exc.exit_code == 2
    assert [p.where for p in exc.problems] == ["training.micro_batch", "training.seed"]
    assert exc.message.splitlines() == [p.text("p.toml") for p in exc.problems]
    assert "hint" not in exc.message and "training.micro_batch: Rows per forward" in exc.hint
    assert "training.seed: Seed for initialisation" in exc.hint
    shown = render_text(exc).splitlines()
    assert shown[0].startswith("error: p.toml: training.micro_batch: ") and shown[2].startswith("  hint: ")
    one = ProfileError([Problem("model.name_or_path", "is required", "set it")], "q.toml")
    assert render_text(one) == "error: q.toml: model.name_or_path: is required\n  hint: set it"


# -- model folders, checked from headers ---------------------------------------------------------------------

@pytest.fixture
def model_copy(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(TINY_MODEL, folder)
    return folder


def preflight_of(folder) -> str:
    profile = loads(toml_text(merged({"model": {"name_or_path": str(folder)}})), source="p.toml")
    return refusal(preflight.check, profile)


def test_the_tiny_model_passes(model_copy):
    profile = loads(toml_text(merged({"model": {"name_or_path": str(model_copy)}})))
    preflight.check(profile)


def test_a_corrupt_config_json_is_named(model_copy):
    (model_copy / "config.json").write_text('{"model_type": "llama", "hidden_size": 64,')
    msg = preflight_of(model_copy)
    assert f"{model_copy / 'config.json'} is not valid JSON (line 1, column" in msg and "hint:" in msg


def test_a_config_json_that_is_a_fifo_is_not_opened(model_copy):
    (model_copy / "config.json").unlink()
    os.mkfifo(model_copy / "config.json")
    msg = preflight_of(model_copy)
    assert f"{model_copy / 'config.json'} is a FIFO (named pipe), not a regular file" in msg


def test_no_tokenizer_files_is_named(model_copy):
    (model_copy / "tokenizer.json").unlink()
    msg = preflight_of(model_copy)
    assert f"{model_copy} has no tokenizer files" in msg and "tokenizer.save_pretrained" in msg


def test_truncated_weights_are_caught_from_the_header(model_copy):
    weights = model_copy / "model.safetensors"
    full = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(full - 1000)
    msg = preflight_of(model_copy)
    assert f"{weights} is truncated: its tensors need {full} bytes, the file holds {full - 1000}" in msg


def test_weights_cut_inside_the_header_or_missing_are_named(model_copy):
    weights = model_copy / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(100)
    assert f"{weights} is cut short or not a safetensors file" in preflight_of(model_copy)
    weights.unlink()
    assert f"{model_copy} has no weights (*.safetensors or *.bin)" in preflight_of(model_copy)


def test_a_shard_listed_in_the_index_but_missing_is_named(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (model_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    msg = preflight_of(model_copy)
    assert f"{model_copy / 'model-00002-of-00002.safetensors'} is missing (listed in model.safetensors.index.json)" \
        in msg


def test_validate_names_the_truncated_file_without_a_traceback(tmp_path, model_copy):
    weights = model_copy / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    profile = tmp_path / "p.toml"
    profile.write_text(toml_text(merged({"model": {"name_or_path": str(model_copy)}})))
    result = run_cli("validate", str(profile), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{weights} is truncated" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr and "valid" not in result.stdout
