"""Datasets: every bundled format is detected and converted; bad rows are counted and named by row."""
from __future__ import annotations

import json

import pytest

from engine.data import DataError, load_data
from engine.profile.schema import DataSection

from .conftest import DATA, TINY_MODEL

FORMATS = {
    "alpaca.json": "alpaca", "alpaca.jsonl": "alpaca", "sharegpt.jsonl": "sharegpt",
    "messages.jsonl": "messages", "prompt_completion.csv": "prompt_completion",
    "prompt_completion.parquet": "prompt_completion", "text": "text",
}


def data(path, **kw) -> DataSection:
    return DataSection(path=str(path), **kw)


@pytest.mark.parametrize("name,fmt", FORMATS.items())
def test_bundled_dataset_format_is_detected_and_normalised(name, fmt):
    report = load_data(data(DATA / name))
    assert report.format == fmt and report.detected and not report.bad_rows
    assert len(report.train) >= 6
    row = report.train[0]
    if fmt == "text":
        assert row["text"].strip()
    else:
        roles = [m["role"] for m in row["messages"]]
        assert "user" in roles and roles[-1] == "assistant"
    assert f"{fmt} format (detected)" in report.summary()


def test_sharegpt_keeps_system_prompts_and_multi_turn():
    rows = load_data(data(DATA / "sharegpt.jsonl")).train
    assert any(r["messages"][0]["role"] == "system" for r in rows)
    assert any(sum(m["role"] == "assistant" for m in r["messages"]) >= 2 for r in rows)


def test_eval_fraction_and_max_samples():
    report = load_data(data(DATA / "messages.jsonl", eval_fraction=0.1, max_samples=50))
    assert len(report.train) == 50 and len(report.eval) == 40


def test_bad_rows_are_counted_and_named(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = {"instruction": "Say hi", "output": "hi"}
    lines = [json.dumps(good)] * 5 + ["{not json", json.dumps({"instruction": "no output"}),
                                      json.dumps({"instruction": "x", "output": 3}), "[1]"]
    path.write_text("\n".join(lines) + "\n")
    report = load_data(data(path))
    assert report.format == "alpaca" and len(report.train) == 5 and len(report.bad_rows) == 4
    text = report.summary()
    assert "mixed.jsonl:6: not valid JSON" in text
    assert 'mixed.jsonl:7: missing "output"' in text
    assert 'mixed.jsonl:8: "output" must be text' in text


def test_csv_bad_row_names_the_line(tmp_path):
    path = tmp_path / "pc.csv"
    path.write_text('prompt,completion\n"a",b\n"c",\n')
    report = load_data(data(path))
    assert report.bad_rows == [("pc.csv:3", '"completion" is empty')]


def test_no_usable_rows_is_an_error_with_rows_and_hint(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": []}\n')
    with pytest.raises(DataError) as info:
        load_data(data(path))
    msg = str(info.value)
    assert "no usable rows in the messages format (0 of 2)" in msg
    assert "bad.jsonl:1: has no assistant reply" in msg and "bad.jsonl:2" in msg and "hint:" in msg


def test_empty_missing_and_unrecognised(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.jsonl: the dataset is empty"):
        load_data(data(empty))
    with pytest.raises(DataError, match="nope.jsonl: no such file or folder"):
        load_data(data(tmp_path / "nope.jsonl"))
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "a", "answer": "b"}\n')
    with pytest.raises(DataError, match=r"cannot tell the data format from its columns \(answer, question\)"):
        load_data(data(odd))
    with pytest.raises(DataError, match="unsupported file type .xlsx"):
        (tmp_path / "x.xlsx").write_text("")
        load_data(data(tmp_path / "x.xlsx"))


def test_wrong_format_set_explicitly(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(data(DATA / "messages.jsonl", format="alpaca"))
    assert 'missing "instruction"' in str(info.value) and "instruction, output" in str(info.value)


def test_hub_dataset_not_in_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DataError) as info:
        load_data(data("someone/not-a-cached-dataset"))
    assert "someone/not-a-cached-dataset: cannot load the hub dataset" in str(info.value)
    assert "HF cache" in str(info.value)


def test_chat_template_marks_only_assistant_replies():
    from transformers import AutoTokenizer

    from engine.train.tokenize import FALLBACK_CHAT_TEMPLATE, tokenize_conversation
    tok = AutoTokenizer.from_pretrained(TINY_MODEL)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 2?"},
                {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3 plus 3?"},
                {"role": "assistant", "content": "6."}]
    for template in (None, FALLBACK_CHAT_TEMPLATE):
        if template:
            tok.chat_template = template
        item = tokenize_conversation(tok, messages, completion_only=True)
        learned = tok.decode([i for i, m in zip(item["input_ids"], item["completion_mask"]) if m])
        assert "4." in learned and "6." in learned and "<|im_end|>" in learned
        assert "2 plus 2" not in learned and "Be brief" not in learned and "3 plus 3" not in learned
