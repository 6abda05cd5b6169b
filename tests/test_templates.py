"""Exact masking with the real chat templates of current model families (tests/fixtures/chat_templates/,
provenance in PROVENANCE.md there), attached to the tiny tokenizer in assets/: for multi-turn, system,
tool-call and reasoning conversations the trained text is exactly the assistant replies and their end
markers (the strings are asserted, not counted)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.train.masking import NOTE_NO_END, NOTE_SYSTEM, NOTE_SYSTEM_DROPPED, NOTE_TOOLS, ChatRenderer, RowSkipped
from engine.train.tokenize import tokenize_conversation

from .helpers import ROOT, TINY_MODEL

TEMPLATES = ROOT / "tests" / "fixtures" / "chat_templates"

# template -> the end-of-turn marker it writes after a reply
END = {
    "command-r-plus": "<|END_OF_TURN_TOKEN|>", "deepseek-r1-distill-qwen-32b": "<｜end▁of▁sentence｜>",
    "deepseek-v2": "</s>", "deepseek-v3": "<｜end▁of▁sentence｜>", "gemma-2-2b-it": "<end_of_turn>",
    "gemma-3-it": "<end_of_turn>", "gemma-7b-it": "<end_of_turn>", "llama-3-instruct": "<|eot_id|>",
    "llama-3.1-instruct": "<|eot_id|>", "llama-3.2-3b-instruct": "<|eot_id|>", "mistral-7b-instruct-v0.1": "</s>",
    "mistral-nemo-instruct-2407": "</s>", "mistral-small-3.1-24b-instruct-2503": "</s>",
    "openhermes-2.5-chatml": "<|im_end|>", "phi-3-mini": "<|end|>", "phi-3-small": "<|end|>",
    "phi-3.5-mini-instruct": "<|end|>", "phi-4": "<|im_end|>", "phi-4-mini-instruct": "<|end|>",
    "qwen2.5-instruct": "<|im_end|>", "qwen3": "<|im_end|>", "smollm3-3b": "<|im_end|>",
    "granite-3.3-2b-instruct": "<|end_of_text|>",
}
NO_SYSTEM_ROLE = {"gemma-2-2b-it", "gemma-7b-it", "mistral-7b-instruct-v0.1"}     # the template raises
DROPS_SYSTEM = {"phi-3-mini", "mistral-nemo-instruct-2407"}                         # the template loses it
HERMES_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
NATIVE_CALL = {   # templates with tool support: the call exactly as the template writes it
    "deepseek-v3": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
                   '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    "deepseek-r1-distill-qwen-32b": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
                                    '```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    "llama-3.1-instruct": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "llama-3.2-3b-instruct": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "mistral-nemo-instruct-2407": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, '
                                  '"id": "call00000"}]',
    "mistral-small-3.1-24b-instruct-2503": '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, '
                                           '"id": "call00000"}]',
    "qwen2.5-instruct": HERMES_CALL, "qwen3": HERMES_CALL,
}

SYSTEM_MULTI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 2?"},
                {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3 plus 3?"},
                {"role": "assistant", "content": "6."}]
MULTI = SYSTEM_MULTI[1:]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOL_CONV = [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [{"id": "call00000", "type": "function", "function": {
                 "name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "18C", "tool_call_id": "call00000", "name": "get_weather"},
             {"role": "assistant", "content": "It is 18C."}]


_BASE = []


def tokenizer_with(name: str):
    """The tiny tokenizer with a fixture's template (loaded once; each template gets its own copy)."""
    import copy

    from transformers import AutoTokenizer
    if not _BASE:
        _BASE.append(AutoTokenizer.from_pretrained(TINY_MODEL))
    tok = copy.deepcopy(_BASE[0])
    tok.chat_template = (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
    return tok


def renderer(name: str, reasoning: str = "keep") -> ChatRenderer:
    return ChatRenderer(tokenizer_with(name), reasoning, name=name)


def trained(r: ChatRenderer, messages, tools=None) -> tuple[str, list[str]]:
    out = r.render(messages, tools)
    return out.text, [out.text[a:b] for a, b in out.spans]


def test_every_fixture_has_an_expectation_and_provenance():
    names = sorted(p.stem for p in TEMPLATES.glob("*.jinja"))
    assert names == sorted(END) and len(names) >= 15
    provenance = (TEMPLATES / "PROVENANCE.md").read_text(encoding="utf-8")
    for name in names:
        assert f"`{name}.jinja`" in provenance


@pytest.mark.parametrize("name", sorted(END))
def test_multi_turn_with_system_trains_exactly_the_replies_and_end_markers(name):
    r = renderer(name)
    for conv in (MULTI, SYSTEM_MULTI):
        text, parts = trained(r, conv)
        assert parts == ["4." + END[name], "6." + END[name]]
        for m in conv:
            if m["role"] != "assistant":
                assert m["content"] in text                     # the prompt is there, as context
                assert all(m["content"] not in p for p in parts)
    assert (NOTE_SYSTEM in r.notes) == (name in NO_SYSTEM_ROLE)
    assert (NOTE_SYSTEM_DROPPED in r.notes) == (name in DROPS_SYSTEM)
    assert NOTE_NO_END not in r.notes


@pytest.mark.parametrize("name", sorted(END))
def test_tool_calls_are_trained_and_tool_results_are_not(name):
    r = renderer(name)
    text, parts = trained(r, TOOL_CONV, TOOLS)
    call = NATIVE_CALL.get(name, HERMES_CALL)
    assert parts == [call + END[name], "It is 18C." + END[name]]
    assert "18C" in text and "get_weather" in text
    assert (NOTE_TOOLS in r.notes) == (name not in NATIVE_CALL)


def test_generation_prompt_artefacts_are_not_trained():
    # The original Llama 3 template always appends an assistant header; Phi-3.5 appends EOS after the last turn.
    text, parts = trained(renderer("llama-3-instruct"), MULTI)
    assert text.endswith("6.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n") and parts[-1] == "6.<|eot_id|>"
    text, parts = trained(renderer("phi-3.5-mini-instruct"), MULTI)
    assert text.endswith("6.<|end|>\n</s>") and parts[-1] == "6.<|end|>"


def test_qwen3_think_blocks_keep_and_drop():
    think = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"},
             {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "<think>\nr2\n</think>\n\nA2"}]
    # keep: the template drops reasoning of turns before the last user query; the last turn's is trained
    text, parts = trained(renderer("qwen3"), think)
    assert parts == ["A1<|im_end|>", "<think>\nr2\n</think>\n\nA2<|im_end|>"] and "r1" not in text
    # the empty think block Qwen3 inserts for a reply without reasoning is template text, never trained
    text, parts = trained(renderer("qwen3"), MULTI)
    assert "<think>\n\n</think>\n\n6." in text and parts == ["4.<|im_end|>", "6.<|im_end|>"]
    # drop: reasoning removed before rendering
    text, parts = trained(renderer("qwen3", reasoning="drop"), think)
    assert parts == ["A1<|im_end|>", "A2<|im_end|>"] and "r2" not in text.replace("<think>\n\n</think>", "")


def test_weight_zero_turns_are_context_only():
    conv = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "bad draft", "weight": 0},
            {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "good"}]
    for name in ("llama-3.1-instruct", "qwen2.5-instruct", "gemma-3-it"):
        text, parts = trained(renderer(name), conv)
        assert "bad draft" in text and parts == ["good" + END[name]]


def test_a_row_the_template_rejects_is_skipped_with_its_message():
    r = renderer("gemma-2-2b-it")
    with pytest.raises(RowSkipped, match="the chat template rejects this row: Conversation roles must alternate"):
        r.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                  {"role": "assistant", "content": "c"}])


def test_token_mask_matches_the_trained_text():
    for name in ("openhermes-2.5-chatml", "llama-3.1-instruct", "mistral-nemo-instruct-2407"):
        tok = tokenizer_with(name)
        item = tokenize_conversation(tok, SYSTEM_MULTI, completion_only=True, renderer=ChatRenderer(tok))
        learned = tok.decode([i for i, m in zip(item["input_ids"], item["completion_mask"]) if m])
        assert learned.replace(" ", "") == f"4.{END[name]}6.{END[name]}".replace(" ", ""), name


def test_bundled_tiny_template_masks_replies():
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(TINY_MODEL)
    _, parts = trained(ChatRenderer(tok), SYSTEM_MULTI)
    assert parts == ["4.<|im_end|>", "6.<|im_end|>"]
    assert Path(TINY_MODEL / "chat_template.jinja").exists()
