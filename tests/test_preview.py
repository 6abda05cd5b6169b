"""`tunetop preview` and `tunetop validate` on slices of real public datasets (tests/fixtures/datasets/), and one
short real training run on them: rows used, skipped and why, exactly as the engine trains them."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from engine import events, rundir

from .helpers import ROOT, TINY_MODEL, run_cli

FIXTURES = ROOT / "tests" / "fixtures"
SLICES = [str(FIXTURES / "datasets" / n) for n in ("alpaca_en_demo_slice.json", "openai_toy_chat_slice.jsonl",
                                                    "glaive_toolcall_en_demo_slice.json")]
ROW_KEYS = ["row", "messages", "text", "trained", "tokens", "truncated"]


def real_slices(make_profile, **training):
    return make_profile("slices", {"data": {"path": SLICES},
                                   "training": {"max_seq_len": 512, "max_steps": 2, "micro_batch": 2, "grad_accum": 1,
                                                "save_steps": 100, **training}})


def test_preview_json_is_one_object_per_row_then_a_summary(home, make_profile):
    result = run_cli("preview", str(real_slices(make_profile)), "--rows", "20", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert len(rows) == 11 and all(list(r) == ROW_KEYS for r in rows)
    for r in rows:
        parts = [r["text"][a:b] for a, b in r["trained"]]
        assert parts and all(p.endswith("<|im_end|>") for p in parts)
        replies = [m for m in r["messages"] if m["role"] == "assistant"]
        assert len(parts) == len(replies)
        for m, p in zip(replies, parts):
            assert p == (m["content"] or "") + "<|im_end|>" or "<tool_call>" in p
        assert all(m["content"] not in "".join(parts) for m in r["messages"] if m["role"] in ("user", "system"))
    glaive = next(r for r in rows if r["row"].startswith("glaive"))
    calls = [r for r in (glaive["text"][a:b] for a, b in glaive["trained"]) if "<tool_call>" in r]
    assert calls[0] == ('<tool_call>\n{"name": "calculate_area", "arguments": {"shape": "rectangle", "dimensions": '
                        '[5, 3]}}\n</tool_call><|im_end|>')
    assert '{"area": 15}' in glaive["text"] and all('{"area": 15}' not in c for c in calls)
    assert [f["format"] for f in summary["files"]] == ["alpaca", "messages", "sharegpt"]
    assert summary["rows"] == 12 and summary["train"] == 11 and summary["bad_count"] == 1
    assert summary["bad_rows"] == [["openai_toy_chat_slice.jsonl:4",
                                    "starts with an assistant turn (expected system or user first)"]]
    assert summary["template_notes"] == {
        "tool calls written as <tool_call> JSON text (the template has no tool support)": 1}
    assert summary["truncated"] == sum(r["truncated"] for r in rows) and summary["template_skipped"] == 0
    assert summary["ok"] is True


def test_preview_human_view_and_validate_counts_truncation_for_train_and_eval(home, make_profile):
    path = real_slices(make_profile, max_seq_len=48)
    text = run_cli("preview", str(path), "--rows", "1").stdout
    assert "«" in text and "<|im_end|>»" in text and "── summary" in text
    path = make_profile("short", {"data": {"path": SLICES, "eval_fraction": 0.3},
                                  "training": {"max_seq_len": 48}})
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert ": valid" in out and "8 train, 3 eval, 1 skipped" in out
    assert "skipped openai_toy_chat_slice.jsonl:4: starts with an assistant turn" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("train:") and "truncated" in x)
    train_cut, eval_cut = int(line.split("train: ")[1].split()[0]), int(line.split("eval: ")[1].split()[0])
    assert train_cut > 0 and eval_cut > 0
    assert "chat template: 0 train rows skipped" in out and "tool calls written as <tool_call> JSON text" in out


def test_validate_refuses_rows_the_template_rejects_and_never_says_valid(home, make_profile, tmp_path):
    model = tmp_path / "gemma-tiny"
    shutil.copytree(TINY_MODEL, model)
    (model / "chat_template.jinja").write_text((FIXTURES / "chat_templates" / "gemma-2-2b-it.jinja").read_text())
    bad = tmp_path / "double_user.jsonl"
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"}]}
    good = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
                         {"role": "assistant", "content": "r"}]}
    bad.write_text("".join(json.dumps(r) + "\n" for r in [good] * 6 + [row] * 2))
    path = make_profile("gemma", {"model": {"name_or_path": str(model)}, "data": {"path": str(bad)}})
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "valid" not in result.stdout
    assert "2 of 8 rows cannot be used" in result.stderr and "double_user.jsonl:7" in result.stderr
    assert "Conversation roles must alternate" in result.stderr and "hint: fix the rows" in result.stderr
    # preview shows the same rows; under the threshold the rows are skipped and reported, the rest is used
    path = make_profile("gemma2", {"model": {"name_or_path": str(model)},
                                   "data": {"path": str(bad), "max_bad_fraction": 0.5}})
    summary = json.loads(run_cli("preview", str(path), "--json").stdout.splitlines()[-1])["summary"]
    assert summary["template_skipped"] == 2 and summary["template_skipped_rows"][0][0] == "double_user.jsonl:7"
    assert summary["template_notes"] == {
        "system prompt merged into the first user turn (the template has no system role)": 6}


def test_validate_and_preview_refuse_a_fifo_without_hanging(home, make_profile, tmp_path):
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    path = make_profile("fifo", {"data": {"path": str(fifo)}})
    for cmd in ("validate", "preview"):
        result = run_cli(cmd, str(path), timeout=120)
        assert result.returncode == 2 and "is a FIFO (named pipe), not a regular file or folder" in result.stderr


@pytest.mark.slow
def test_a_real_training_run_on_the_slices_reports_rows_used_and_skipped(home, make_profile):
    result = run_cli("run", str(real_slices(make_profile)), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    evs = events.read_all(rundir.resolve("last") / "events.jsonl")
    start = next(e for e in evs if e["type"] == "start")
    # 11 usable rows; the Glaive row renders to 1290 tokens with its tool list, so at max_seq_len 512 its
    # first tool call lies past the cut: nothing left to learn, dropped (and said so)
    assert start["train_rows"] == 10 and start["skipped_rows"] == 1 and evs[-1]["status"] == "completed"
    logs = " | ".join(e["message"] for e in evs if e["type"] == "log")
    assert "train: 1 rows longer than max_seq_len=512 were truncated; 1 rows had nothing left to learn" in logs
    assert "skipped openai_toy_chat_slice.jsonl:4: starts with an assistant turn" in logs
    assert "chat template: 1 rows: tool calls written as <tool_call> JSON text" in logs


def test_validate_refuses_data_with_nothing_left_to_learn_at_max_seq_len(home, make_profile, tmp_path):
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"prompt": "word " * 200, "completion": f"answer {i}"}) + "\n"
                            for i in range(4)))
    result = run_cli("validate", str(make_profile("long", {"data": {"path": str(long)},
                                                            "training": {"max_seq_len": 32}})))
    assert result.returncode == 2 and "valid" not in result.stdout
    assert "no row has a trainable token after tokenizing at max_seq_len 32 (4 rows dropped" in result.stderr
