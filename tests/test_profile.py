"""Profiles: the schema, the one validator, and the messages a user gets for every kind of bad input."""
from __future__ import annotations

import pytest

from engine import paths
from engine.errors import render_text
from engine.profile import ProfileError, check_field, dumps, list_profiles, load, loads, save

from .helpers import TINY_MODEL, merged, toml_text


def errors_of(text: str, source="p.toml") -> str:
    """What the user reads: every problem, with its hint (engine.errors.render_text)."""
    with pytest.raises(ProfileError) as info:
        loads(text, source=source)
    return render_text(info.value)


def test_every_bundled_profile_is_valid():
    names = {p.stem for p in list_profiles()}
    assert {"demo", "llama3.1-8b-qlora-24gb", "llama2-13b-qlora-24gb", "llama3.2-3b-lora",
            "llama3.1-70b-qlora-80gb", "chat-sharegpt", "domain-text"} <= names
    for path in list_profiles():
        profile = load(path)
        assert profile.name == path.stem
        assert profile.description, f"{path} needs a description"


def test_defaults_suit_a_24gb_gpu():
    p = loads('[model]\nname_or_path = "meta-llama/Llama-3.1-8B"\n[data]\npath = "yahma/alpaca-cleaned"\n')
    assert p.method.type == "qlora" and p.method.quant_type == "nf4" and p.method.double_quant
    assert p.training.gradient_checkpointing and p.training.optimizer == "paged_adamw_8bit"
    assert p.effective_batch == 16
    # A hub id that is not a folder next to the profile stays a hub id.
    assert p.model.name_or_path == "meta-llama/Llama-3.1-8B"


def test_relative_paths_resolve_next_to_the_profile(tmp_path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    p = loads('[model]\nname_or_path = "./m"\n[data]\npath = "d.jsonl"\n', source=tmp_path / "x.toml")
    assert p.data.path == str(tmp_path / "d.jsonl")
    assert p.model.name_or_path == str(tmp_path / "m")


def test_save_and_load_round_trip(tmp_path, make_profile):
    original = load(make_profile())
    target = tmp_path / "again.toml"
    save(original, target)
    again = load(target)
    assert again.to_dict() == original.to_dict()
    assert not list(tmp_path.glob(".again.toml.*")), "atomic write left its temp file behind"


def test_malformed_toml_names_the_line():
    msg = errors_of('[model]\nname_or_path = "x"\n[training]\nmicro_batch = \n')
    assert "p.toml" in msg and "not valid TOML" in msg and "line 4" in msg


def test_unknown_key_suggests_the_right_one():
    msg = errors_of(toml_text(merged({"training": {"learning_rte": 1e-4}})))
    assert "training.learning_rte: unknown key" in msg and 'did you mean "learning_rate"' in msg


def test_key_in_the_wrong_section_says_where_it_belongs():
    msg = errors_of(toml_text(merged({"data": {"micro_batch": 2}})))
    assert "data.micro_batch: unknown key" in msg and "belongs in [training]" in msg


def test_unknown_section():
    msg = errors_of(toml_text(merged({"trainng": {"x": 1}})))
    assert 'trainng: unknown key' in msg and 'did you mean "training"' in msg


@pytest.mark.parametrize("field,value,expected", [
    ("micro_batch", "four", 'expected a whole number or "auto", got "four" (a string)'),
    ("micro_batch", 0, "expected a whole number from 1 to 4096, got 0"),
    ("learning_rate", "fast", 'expected a number, got "fast"'),
    ("warmup_ratio", 1.5, "expected a number from 0 to 1, got 1.5"),
    ("packing", "yes", 'expected true or false, got "yes"'),
    ("scheduler", "cosin", 'did you mean "cosine"'),
    ("max_seq_len", 4, "expected a whole number from 8 to 1048576"),
])
def test_wrong_type_or_out_of_range_names_field_and_value(field, value, expected):
    msg = errors_of(toml_text(merged({"training": {field: value}})))
    assert f"training.{field}" in msg and expected in msg and "hint:" in msg


def test_several_problems_are_reported_together():
    msg = errors_of(toml_text(merged({"training": {"micro_batch": -1, "grad_accum": "x"}})))
    assert "training.micro_batch" in msg and "training.grad_accum" in msg


def test_qlora_settings_with_full_fine_tune_are_inconsistent():
    msg = errors_of(toml_text(merged({"method": {"type": "full", "quant_type": "nf4", "lora_r": None,
                                                 "lora_alpha": None, "lora_dropout": None}})))
    assert "method.quant_type" in msg and 'method.type = "full"' in msg and 'type = "qlora"' in msg


def test_lora_settings_with_full_fine_tune_are_inconsistent():
    msg = errors_of(toml_text(merged({"method": {"type": "full"}})))
    assert "method.lora_r" in msg and "LoRA setting" in msg


def test_eval_steps_without_eval_data():
    msg = errors_of(toml_text(merged({"training": {"eval_steps": 5}})))
    assert "training.eval_steps" in msg and "eval_fraction" in msg


def test_missing_model_and_data_are_required():
    msg = errors_of('[training]\nmax_steps = 3\n')
    assert "model.name_or_path: is required" in msg and "data.path: is required" in msg


def test_written_profile_leaves_out_settings_of_other_methods(make_profile):
    text = dumps(load(make_profile(overrides={"method": {"type": "full", "lora_r": None, "lora_alpha": None,
                                                                  "lora_dropout": None}})))
    assert "lora_r" not in text and "quant_type" not in text
    text = dumps(load(make_profile(overrides={"method": {"type": "qlora"}})))
    assert "lora_r = 8" in text and 'quant_type = "nf4"' in text


def test_check_field_validates_one_value_as_typed():
    assert check_field("training", "micro_batch", 4) is None
    assert "whole number" in check_field("training", "micro_batch", "x")
    assert check_field("method", "type", "qlora") is None


def test_user_profile_shadows_bundled(home, tmp_path):
    user = paths.user_profiles()
    user.mkdir(parents=True)
    (user / "demo.toml").write_text(toml_text(merged({"training": {"max_steps": 3}})))
    found = {p.stem: p for p in list_profiles()}
    assert found["demo"].parent == user
    assert str(TINY_MODEL) in (user / "demo.toml").read_text()
