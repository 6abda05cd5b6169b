"""Datasets: every format and shape people bring is read, detected per file and normalised; every bad-data case
gives a clear message naming the file, the row or the line (asserted), and odd input never hangs."""
from __future__ import annotations

import json
import os
import resource
import signal
import socket

import pytest

from engine.data import DataError, load_data
from engine.data import readers
from engine.errors import render_text
from engine.profile.schema import DataSection

from .helpers import DATA, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "datasets"
FORMATS = {
    "alpaca.json": "alpaca", "alpaca.jsonl": "alpaca", "sharegpt.jsonl": "sharegpt",
    "messages.jsonl": "messages", "prompt_completion.csv": "prompt_completion",
    "prompt_completion.parquet": "prompt_completion", "text": "text",
}


def data(path, **kw) -> DataSection:
    return DataSection(path=path if isinstance(path, list) else str(path), **kw)


def jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def fails(section: DataSection, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        load_data(section)
    text = render_text(info.value)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


@pytest.fixture(autouse=True)
def no_hang():
    """Odd input must never hang: any test here taking over 60 s fails instead of blocking the suite."""
    def boom(*_):
        raise TimeoutError("a data test hung")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------------- formats

@pytest.mark.parametrize("name,fmt", FORMATS.items())
def test_bundled_dataset_format_is_detected_and_normalised(name, fmt):
    report = load_data(data(DATA / name))
    assert report.format == fmt and report.detected and not report.bad_rows
    assert len(report.train) >= 6 and report.train_count == len(report.train)
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


def test_keep_bounds_the_rows_held_but_counts_all():
    report = load_data(data(DATA / "messages.jsonl", eval_fraction=0.1), keep=30)
    assert report.train_count + report.eval_count == 400 and len(report.train) + len(report.eval) <= 30


def test_real_slices_normalise(tmp_path):
    """Slices of public datasets (tests/fixtures/datasets/PROVENANCE.md) in each shape."""
    alpaca = load_data(data(FIXTURES / "alpaca_en_demo_slice.json"))
    assert alpaca.format == "alpaca" and alpaca.train_count == 7
    triangle = next(r for r in alpaca.train if "triangle" in r["messages"][0]["content"])
    assert triangle["messages"][0]["content"].endswith("Side 3 = 8")          # instruction + input joined
    toy = load_data(data(FIXTURES / "openai_toy_chat_slice.jsonl", max_bad_fraction=0.5))
    assert toy.format == "messages" and toy.train_count == 3
    assert toy.bad_rows == [("openai_toy_chat_slice.jsonl:4", "starts with an assistant turn (expected system or "
                                                               "user first)")]
    glaive = load_data(data(FIXTURES / "glaive_toolcall_en_demo_slice.json"))
    row = glaive.train[0]
    assert glaive.format == "sharegpt" and [t["function"]["name"] for t in row["tools"]] == \
        ["calculate_area", "calculate_discount"]
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"] * 3
    call = row["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "calculate_area", "arguments": {"shape": "rectangle", "dimensions": [5, 3]}}
    assert row["messages"][2]["tool_call_id"] == call["id"] and row["messages"][2]["content"] == '{"area": 15}'


def test_openai_tool_calls_content_parts_weight_and_reasoning(tmp_path):
    rows = [{"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "Draft.", "weight": 0},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "<think>\nsay welcome\n</think>\n\nYou are welcome."}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}]
    report = load_data(data(jsonl(tmp_path / "t.jsonl", rows)))
    msgs = report.train[0]["messages"]
    assert msgs[0]["content"] == "Be brief."
    assert msgs[2]["content"] == "" and msgs[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert msgs[4]["weight"] == 0 and report.train[0]["tools"][0]["function"]["name"] == "get_weather"
    dropped = load_data(data(str(tmp_path / "t.jsonl"), reasoning="drop")).train[0]["messages"]
    assert dropped[-1]["content"] == "You are welcome."


def test_sharegpt_top_level_system_and_alpaca_history(tmp_path):
    share = load_data(data(jsonl(tmp_path / "s.jsonl", [{"system": "You are terse.", "conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}])))
    assert share.train[0]["messages"][0] == {"role": "system", "content": "You are terse."}
    alp = load_data(data(jsonl(tmp_path / "a.jsonl", [{"instruction": "and 3+3?", "output": "6", "history": [
        ["2+2?", "4"]]}])))
    assert [(m["role"], m["content"]) for m in alp.train[0]["messages"]] == [
        ("user", "2+2?"), ("assistant", "4"), ("user", "and 3+3?"), ("assistant", "6")]


def test_column_mapping_and_the_suggested_line(tmp_path):
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n", encoding="utf-8")
    fails(data(csv_path), "qa.csv: cannot tell the data format from its columns (answer, question)",
          'hint: add this line to the [data] section: columns = { prompt = "question", completion = "answer" }')
    report = load_data(data(csv_path, columns={"prompt": "question", "completion": "answer"}))
    assert report.format == "prompt_completion" and report.train_count == 2
    odd = tmp_path / "odd.jsonl"
    jsonl(odd, [{"foo": 1, "bar": 2}])
    text = fails(data(odd), "cannot tell the data format from its columns (bar, foo)", "data.columns")
    assert "data.format" not in text


def test_several_files_are_detected_one_by_one(tmp_path):
    paths = [str(FIXTURES / "alpaca_en_demo_slice.json"), str(FIXTURES / "glaive_toolcall_en_demo_slice.json"),
             str(DATA / "messages.jsonl")]
    report = load_data(data(paths))
    assert [f.format for f in report.files] == ["alpaca", "sharegpt", "messages"]
    assert report.train_count == 7 + 1 + 400 and report.format == "alpaca+messages+sharegpt"
    assert "glaive_toolcall_en_demo_slice.json: sharegpt, 1 rows" in report.summary()


def test_a_file_mixing_formats_is_an_error_with_counts(tmp_path):
    rows = [{"instruction": "a", "output": "b"}] * 3 + [{"conversations": [{"from": "human", "value": "x"},
                                                                           {"from": "gpt", "value": "y"}]}] * 2
    fails(data(jsonl(tmp_path / "mix.jsonl", rows)), "mix.jsonl: the file mixes row formats (3 alpaca, 2 sharegpt rows)",
          "hint: put each format in its own file")


def test_text_and_chat_cannot_be_mixed():
    fails(data([str(DATA / "text"), str(DATA / "messages.jsonl")]), "mixes raw text", "separate runs")


# ---------------------------------------------------------------------------------------------- bad rows

def test_bad_rows_are_counted_and_named_below_the_threshold(tmp_path):
    good = {"instruction": "Say hi", "output": "hi"}
    path = jsonl(tmp_path / "mixed.jsonl", [good] * 36 + ["{not json", {"instruction": "no output"},
                                                           {"instruction": "x", "output": 3}, "[1]"])
    report = load_data(data(path))
    assert report.format == "alpaca" and report.train_count == 36 and report.bad_count == 4
    text = report.summary()
    assert "mixed.jsonl:37: not valid JSON" in text
    assert 'mixed.jsonl:38: missing "output"' in text
    assert 'mixed.jsonl:39: "output" must be text' in text
    assert "mixed.jsonl:40: expected a JSON object, got list" in text


def test_too_many_bad_rows_stop_before_training(tmp_path):
    path = jsonl(tmp_path / "half.jsonl", [{"instruction": "a", "output": "b"}] * 5 + [{"instruction": "a"}] * 4)
    fails(data(path), "4 of 9 rows (44%) cannot be used, more than data.max_bad_fraction = 0.1",
          '4 x missing "output"', "half.jsonl:6", "hint: fix the rows, or raise data.max_bad_fraction")
    assert load_data(data(path, max_bad_fraction=0.5)).train_count == 5


def test_csv_bad_row_names_the_line(tmp_path):
    path = tmp_path / "pc.csv"
    path.write_text('prompt,completion\n' + '"a",b\n' * 12 + '"c",\n')
    report = load_data(data(path))
    assert report.bad_rows == [("pc.csv:14", '"completion" is empty')]


def test_no_usable_rows_is_an_error_with_rows_and_hint(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": []}\n')
    fails(data(path), "no usable rows in the messages format (0 of 2)", "bad.jsonl:1: has no assistant reply",
          "bad.jsonl:2", "hint: messages rows need")


def test_empty_missing_and_unsupported(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    fails(data(empty), "empty.jsonl: the dataset is empty")
    fails(data(tmp_path / "nope.jsonl"), "nope.jsonl: no such file or folder", "hint: check data.path")
    (tmp_path / "x.xlsx").write_text("")
    fails(data(tmp_path / "x.xlsx"), "unsupported file type .xlsx", "hint: use one of .json")


def test_wrong_format_set_explicitly():
    fails(data(DATA / "messages.jsonl", format="alpaca"), 'missing "instruction"', "instruction, output")


def test_multimodal_parts_and_bad_weights_are_refused_per_row(tmp_path):
    ok = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                                       {"type": "image_url", "image_url": {"url": "x.png"}}]},
                          {"role": "assistant", "content": "a cat"}]}
    weight = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 2}]}
    report = load_data(data(jsonl(tmp_path / "m.jsonl", [ok] * 20 + [image, weight])))
    assert report.bad_rows == [
        ("m.jsonl:21", "messages[0].content has a image_url part: multimodal training is not supported (only text is "
                       "trained)"),
        ("m.jsonl:22", "messages[1].weight must be 0 (not trained) or 1 (trained), got 2")]


def test_preference_and_kto_data_are_refused_for_sft(tmp_path):
    pref = jsonl(tmp_path / "pref.jsonl", [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}])
    fails(data(pref), "pref.jsonl: this is preference data (chosen/rejected pairs), which supervised fine-tuning "
                      "cannot use", "hint: train it with a preference method")
    fails(data(FIXTURES / "kto_en_demo_slice.json"), "this is KTO data (completions labelled true/false)",
          "hint: train it with KTO")
    fails(data(pref, format="prompt_completion"), "this is preference data")


def test_placeholders_are_warned_with_count_and_example(tmp_path):
    rows = [{"instruction": "Write to {{name}} about {{ topic }}", "output": "Dear {{name}}"}] * 2 + \
        [{"instruction": "plain", "output": "text"}]
    report = load_data(data(jsonl(tmp_path / "p.jsonl", rows)))
    assert report.warnings == ["2 rows carry template placeholders such as {{name}} (first at p.jsonl:1): an "
                               "unfilled prompt template is trained as written"]


# ---------------------------------------------------------------------------------------------- encodings

def test_utf8_bom_is_accepted_everywhere(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "b.jsonl").write_bytes(bom + b'{"prompt": "a", "completion": "b"}\n' * 3)
    assert load_data(data(tmp_path / "b.jsonl")).train_count == 3          # row 1 not lost
    (tmp_path / "b.csv").write_bytes(bom + b"prompt,completion\na,b\n")
    report = load_data(data(tmp_path / "b.csv"))
    assert report.format == "prompt_completion" and "\ufeff" not in "".join(report.train[0]["messages"][0])
    (tmp_path / "b.json").write_bytes(bom + b'[{"text": "x"}]')
    assert load_data(data(tmp_path / "b.json")).train_count == 1


def test_other_encodings_are_errors_naming_file_and_line(tmp_path):
    (tmp_path / "cp.jsonl").write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    fails(data(tmp_path / "cp.jsonl"), "cp.jsonl: line 2 is not UTF-8 text", "hint: save the file as UTF-8")
    (tmp_path / "latin1.csv").write_bytes("prompt,completion\nna\xefve,r\xe9sum\xe9\n".encode("latin-1"))
    fails(data(tmp_path / "latin1.csv"), "latin1.csv: line 2 is not UTF-8 text")
    (tmp_path / "l.json").write_bytes(b'[\n{"text": "ok"},\n{"text": "\xff"}]')
    fails(data(tmp_path / "l.json"), "l.json: line 3 is not UTF-8 text")


def test_json_object_holding_rows_and_a_single_conversation(tmp_path):
    (tmp_path / "wrapped.json").write_text(json.dumps({"version": 1, "data": [{"prompt": "a", "completion": "b"}] * 2}))
    assert load_data(data(tmp_path / "wrapped.json")).train_count == 2
    (tmp_path / "one.json").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                                {"role": "assistant", "content": "hey"}]}))
    report = load_data(data(tmp_path / "one.json"))
    assert report.train_count == 1 and report.train[0]["messages"][1]["content"] == "hey"
    (tmp_path / "odd.json").write_text(json.dumps({"a": 1, "b": "x"}))
    fails(data(tmp_path / "odd.json"), "expected a JSON list of rows, an object holding one list of rows, or one row")


# ---------------------------------------------------------------------------------------------- odd input

def test_fifos_devices_and_symlinks_to_them_are_refused(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    fails(data(fifo), "pipe.jsonl is a FIFO (named pipe), not a regular file or folder", "hint: point data.path")
    fails(data("/dev/zero"), "/dev/zero is a character device, not a regular file or folder")
    link = tmp_path / "random.jsonl"
    link.symlink_to("/dev/urandom")
    fails(data(link), "random.jsonl (a symlink to /dev/urandom) is a character device")
    sock_path = tmp_path / "s.jsonl"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        fails(data(sock_path), "s.jsonl is a socket")
    finally:
        sock.close()


def test_a_line_over_the_limit_is_an_error_naming_the_line(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = jsonl(tmp_path / "long.jsonl", [{"text": "ok"}, {"text": "x" * 5000}])
    fails(data(path), "long.jsonl: line 2 is longer than 1000 bytes", "hint: one row per line")
    (tmp_path / "cell.csv").write_text('prompt,completion\na,b\nc,"' + "y" * 600 + "\n" + "y" * 600 + '"\n')
    fails(data(tmp_path / "cell.csv"), "cell.csv: line 3: field larger than field limit (1000)")


def test_a_2gb_file_is_never_read_into_memory(tmp_path):
    """Sparse 2 GB files: the JSONL reader stops after one 64 MiB line, the .json reader refuses by size."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(2 * 1024 ** 3)
    fails(data(big), "big.jsonl: line 1 is longer than 64 MiB")
    big_json = tmp_path / "big.json"
    os.rename(big, big_json)
    fails(data(big_json), "big.json: 2048 MiB is too large to read as one JSON document (limit 512 MiB)",
          "hint: convert it to JSON Lines")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 400, f"peak memory grew by {grown_mib:.0f} MiB"


def test_hub_dataset_not_in_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    fails(data("someone/not-a-cached-dataset"), "someone/not-a-cached-dataset: cannot load the hub dataset",
          "HF cache")
