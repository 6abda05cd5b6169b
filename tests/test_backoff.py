"""OOM backoff, in process: exact splitting (gradients, loss, metrics, token counts), restoring gradients
after an OOM in the backward pass, refusals, the ladder, evaluation backoff, the max_seq_len rung, the
memory-release check, and the small pieces (chunking, fit cache, state).

Gradient equality is measured in fp32 on the tiny model, for LoRA and QLoRA (adapters cast back to fp32),
padded and packed batches, one accumulation window computed unsplit and split in 2 and 4.
"""
from __future__ import annotations

import pytest
import torch

from engine.train import backoff as bk
from engine.train.backoff_split import (SideEffects, _even_ranges, batch_kind, label_tokens, make_chunks,
                                        truncate, units)

from .backoff_helpers import build_trainer, first_window, max_diff, window_grads

TOL = 1e-6   # fp32; measured differences are about 1e-7


class ListWriter:
    def __init__(self):
        self.events = []

    def write(self, type_, **fields):
        self.events.append({"type": type_, **fields})

    def of(self, type_):
        return [e for e in self.events if e["type"] == type_]


# -- gradient equality ----------------------------------------------------------------------------------------

CASES = [("lora", False), ("lora", True), ("qlora", False), ("qlora", True)]


@pytest.mark.parametrize("method,packing", CASES, ids=[f"{m}-{'packed' if p else 'padded'}" for m, p in CASES])
def test_split_window_equals_unsplit(method, packing, tmp_path, monkeypatch):
    writer = ListWriter()
    trainer = build_trainer(method, packing, writer=writer, tmp=tmp_path)
    batches, num_items = first_window(trainer)
    kind = "packed" if packing else "padded"
    assert trainer.padding_free == packing
    ref, ref_loss, ref_metrics, ref_tokens = window_grads(trainer, batches, num_items, 1)
    scale = max(float(g.abs().max()) for g in ref.values())
    for split in (2, 4):
        grads, loss, metrics, tokens = window_grads(trainer, batches, num_items, split)
        diff = max_diff(ref, grads)
        print(f"{method} {kind} split {split}: max |grad diff| = {diff:.3e} (max |grad| {scale:.3e}), "
              f"loss {ref_loss:.9f} vs {loss:.9f}")
        assert diff < TOL
        assert loss == pytest.approx(ref_loss, rel=1e-6)
        assert tokens == ref_tokens                       # SFTTrainer's token counter: as if unsplit
        assert len(metrics["entropy"]) == len(ref_metrics["entropy"]) == len(batches)
        for key in ("entropy", "mean_token_accuracy"):
            assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-6, abs=1e-7)

    # An OOM in the backward pass of the last micro-batch, after part of its gradients were written: they
    # are put back, the micro-batch is re-run in 2 chunks, and the window's gradient is the unsplit one.
    from engine.train import trainer as trainer_mod
    partial = []

    class Spy(trainer_mod.GradSnapshot):
        def restore(self):
            partial.append(any(p.grad is not None and (g is None or not torch.equal(p.grad, g))
                               for p, g in zip(self.params, self.saved)))
            return super().restore()

    monkeypatch.setattr(trainer_mod, "GradSnapshot", Spy)
    grads, loss, metrics, tokens = window_grads(trainer, batches, num_items, 1, faults={1: "backward"})
    diff = max_diff(ref, grads)
    print(f"{method} {kind} OOM in backward -> split {trainer.bo.split}: max |grad diff| = {diff:.3e}")
    assert partial == [True], "the injected OOM should come after some gradients were written"
    assert trainer.bo.split == 2 and diff < TOL and tokens == ref_tokens
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert metrics["entropy"] == pytest.approx(ref_metrics["entropy"], rel=1e-6)
    event = writer.of("backoff")[-1]
    assert event["action"] == "split" and event["step"] == 1 and event["phase"] == "backward"
    assert event["before"]["micro_batch"] == 8 and event["after"] == {
        "micro_batch": 4, "grad_accum": 4, "gradient_checkpointing": False, "max_seq_len": 128}
    assert "micro-batch 8 -> 4, accumulation 2 -> 4, effective batch 16 kept" in event["message"]


# -- one trainer for the rest -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    writer = ListWriter()
    trainer = build_trainer("lora", False, micro_batch=4, grad_accum=2, writer=writer,
                            tmp=tmp_path_factory.mktemp("lora"), eval_fraction=0.2)
    return trainer, writer


def reset(trainer, writer):
    trainer.bo.split, trainer.bo.eval_split, trainer.bo.history = 1, 1, []
    trainer.bo.max_seq_len = trainer.bo.profile_max_seq_len
    trainer.allow_shorter = False
    if trainer.bo.gradient_checkpointing:
        trainer._set_gc(False)
    writer.events.clear()


def test_refuses_to_split_without_num_items(lora):
    trainer, writer = lora
    reset(trainer, writer)
    batches, _ = first_window(trainer)
    window_grads(trainer, batches, None, 1, faults={1: "forward"})
    event = writer.of("backoff")[-1]
    assert trainer.bo.split == 1 and event["action"] == "gradient_checkpointing"
    assert "not split" in event["message"] and "num_items_in_batch" in event["message"]
    reset(trainer, writer)


def test_memory_not_released_escalates_to_relaunch(lora, tmp_path, monkeypatch):
    trainer, writer = lora
    reset(trainer, writer)
    from engine.train import trainer as trainer_mod
    monkeypatch.setattr(trainer_mod, "released", lambda baseline: (False, 3 << 30))
    monkeypatch.setattr(trainer, "tt_run_dir", tmp_path)
    batches, num_items = first_window(trainer)
    with pytest.raises(bk.RelaunchRequest) as info:
        window_grads(trainer, batches, num_items, 1, faults={1: "forward"})
    assert "memory did not come back" in str(info.value)
    saved = bk.read_state(tmp_path / bk.OVERRIDE_FILE)
    assert saved.split == 2 and saved.relaunches == 1          # the relaunch starts one rung up
    assert writer.of("backoff")[-1]["action"] == "relaunch"
    assert trainer.bo.split == 1                               # this process did not loop on it
    reset(trainer, writer)


def test_eval_backs_off_alone_and_gives_the_same_loss(lora, monkeypatch):
    trainer, writer = lora
    reset(trainer, writer)
    clean = trainer.evaluate()
    monkeypatch.setenv(bk.FAULT_EVAL_TOKENS, "150")
    backed = trainer.evaluate()
    print(f"eval loss {clean['eval_loss']:.9f} unsplit, {backed['eval_loss']:.9f} with eval split "
          f"{trainer.bo.eval_split}")
    assert trainer.bo.eval_split > 1 and trainer.bo.split == 1      # training untouched
    assert backed["eval_loss"] == pytest.approx(clean["eval_loss"], rel=1e-6)
    assert backed["eval_entropy"] == pytest.approx(clean["eval_entropy"], rel=1e-6)
    events = writer.of("backoff")
    assert events and all(e["action"] == "eval_split" and "training unchanged" in e["message"] for e in events)
    monkeypatch.setenv(bk.FAULT_EVAL_TOKENS, "1")                   # nothing fits: evaluation is skipped
    assert trainer.evaluate() == {}
    assert "evaluation skipped" in writer.of("log")[-1]["message"]
    reset(trainer, writer)


def test_shorter_seq_len_rung_renormalises_the_window(lora):
    trainer, writer = lora
    reset(trainer, writer)
    batches, num_items = first_window(trainer)
    keep = [{k: v.clone() for k, v in b.items()} for b in batches]
    # Reference: micro-batch 0 whole, micro-batch 1 cut to 32 tokens, normalised by the tokens trained on.
    cut = truncate(keep[1], 32)
    ref_items = label_tokens(keep[0]) + label_tokens(cut)
    ref, _, _, _ = window_grads(trainer, [keep[0], cut], ref_items.to(num_items.dtype), 1)
    # The rung, taken in the middle of the window (after micro-batch 0 was accumulated).
    trainer.model.zero_grad(set_to_none=True)
    trainer._window, trainer._mb_index, trainer._num_items_override = batches, -1, None
    trainer._faults = {}
    trainer.training_step(trainer.model, batches[0], num_items)
    trainer._mb_index += 1
    trainer.bo.max_seq_len = 32
    inputs, items = trainer._shorten_window(batches[1], num_items)
    trainer._mb_index -= 1
    trainer.training_step(trainer.model, inputs, items)
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    diff = max_diff(ref, grads)
    print(f"max_seq_len lowered mid-window: max |grad diff| vs the renormalised reference = {diff:.3e}")
    assert float(items) == float(ref_items) and diff < TOL
    assert batches[1]["input_ids"].shape[1] == 32
    reset(trainer, writer)


def test_ladder_order_with_the_token_hook(lora, monkeypatch):
    """Split to one row, then gradient checkpointing, then (allowed) halve max_seq_len until it fits."""
    trainer, writer = lora
    reset(trainer, writer)
    trainer.allow_shorter = True
    monkeypatch.setenv(bk.FAULT_TOKENS, "40")
    batches, num_items = first_window(trainer)
    window_grads(trainer, batches, num_items, 1)
    actions = [e["action"] for e in writer.of("backoff")]
    print("ladder:", " -> ".join(actions))
    assert actions[:4] == ["split", "split", "gradient_checkpointing", "max_seq_len"]
    assert trainer.bo.max_seq_len <= 32 and all(b["input_ids"].shape[1] <= 32 for b in batches)
    assert all(torch.isfinite(p.grad).all() for p in trainer._params() if p.grad is not None)
    reset(trainer, writer)


# -- pieces --------------------------------------------------------------------------------------------------

def packed_batch(lengths):
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    ids = torch.arange(pos.shape[1])[None] + 10
    labels = ids.clone()
    labels[pos == 0] = -100
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), torch.tensor(lengths))[None]
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
            "max_length_q": max(lengths), "max_length_k": max(lengths), "seq_idx": seq_idx}


def test_packed_chunks_cut_at_document_boundaries():
    batch = packed_batch([5, 3, 8, 2, 6])
    chunks = make_chunks(batch, 2)
    assert torch.equal(torch.cat([c["input_ids"] for c in chunks], 1), batch["input_ids"])
    assert sum(int(label_tokens(c)) for c in chunks) == int(label_tokens(batch))
    for c in chunks:
        n = c["input_ids"].shape[1]
        assert int(c["position_ids"][0, 0]) == 0 and int(c["cu_seq_lens_q"][-1]) == n
        lengths = (c["cu_seq_lens_q"][1:] - c["cu_seq_lens_q"][:-1]).tolist()
        assert c["max_length_q"] == max(lengths) and int(c["seq_idx"][0, 0]) == 0
    assert units(batch) == 5 and len(make_chunks(batch, 8)) == 5     # never more pieces than documents
    cut = truncate(batch, 4)
    assert (cut["cu_seq_lens_q"][1:] - cut["cu_seq_lens_q"][:-1]).tolist() == [4, 3, 4, 2, 4]
    assert cut["seq_idx"].tolist() == [[0] * 4 + [1] * 3 + [2] * 4 + [3] * 2 + [4] * 4]


def test_padded_chunks_trim_padding():
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    batch = {"input_ids": torch.ones(3, 4, dtype=torch.long), "attention_mask": mask,
             "labels": torch.ones(3, 4, dtype=torch.long)}
    chunks = make_chunks(batch, 2)
    assert [tuple(c["input_ids"].shape) for c in chunks] == [(2, 4), (1, 1)]
    assert _even_ranges(6, 4) == [(0, 2), (2, 4), (4, 5), (5, 6)]
    assert batch_kind(batch) == "padded" and batch_kind({**batch, "pixel_values": torch.ones(3, 2)}) == "other"


def test_ladder_and_grow_back_are_bounded():
    s = bk.BackoffState(micro_batch=6, grad_accum=2, max_seq_len=512, profile_max_seq_len=512)
    rungs = []
    while True:
        rung = bk.next_rung(s, max_split=6, refusal=None, allow_shorter=True)
        rungs.append((rung.action, s.rows_per_pass, s.grad_accum * s.split, s.max_seq_len))
        if rung.action == "exhausted":
            break
    assert [r[0] for r in rungs] == ["split", "split", "split", "gradient_checkpointing", "max_seq_len",
                                     "max_seq_len", "max_seq_len", "exhausted"]
    assert [r[1] for r in rungs[:3]] == [3, 2, 1] and rungs[2][2] == 12 and s.max_seq_len == 64
    g = bk.BackoffState(micro_batch=8, grad_accum=2, split=4, floor_split=2)
    g.clean_steps = 5
    assert bk.grow_back(g, 5) == "split" and g.split == 2 and g.growing
    g.growing, g.clean_steps = False, 100
    assert bk.grow_back(g, 5) is None                       # never below what the probe showed
    g.split, g.grow_failures = 4, bk.MAX_GROW_FAILURES
    assert bk.grow_back(g, 5) is None                       # gave up growing after repeated failures


def test_state_adopt_converts_to_the_new_micro_batch():
    saved = bk.BackoffState(micro_batch=8, grad_accum=2, split=4, gradient_checkpointing=True, relaunches=1)
    s = bk.BackoffState(micro_batch=16, grad_accum=1)
    s.adopt(bk.BackoffState.from_json(saved.to_json()))
    assert s.rows_per_pass == 2 and s.split == 8 and s.gradient_checkpointing and s.relaunches == 1


def test_side_effects_merge_is_the_count_weighted_mean():
    class T:
        pass
    t = T()
    t._metrics = {"train": {"entropy": [1.0], "num_tokens": [10]}}
    t._total_train_tokens = 10
    fx = SideEffects(t, "train")
    t._metrics["train"]["entropy"] += [2.0, 4.0]
    fx.merge([1.0, 3.0])
    assert t._metrics["train"]["entropy"] == [1.0, (2.0 * 1 + 4.0 * 3) / 4]
    fx2 = SideEffects(t, "train")
    t._metrics["train"]["entropy"].append(9.0)
    t._metrics["train"]["mean_token_accuracy"] = [0.5]
    t._metrics["train"]["num_tokens"] = [99]
    t._total_train_tokens = 99
    fx2.undo()
    assert t._metrics["train"] == {"entropy": [1.0, 3.5], "num_tokens": [10]} and t._total_train_tokens == 10


def test_fit_cache_remembers_fits_and_fails(home):
    from engine import fitcache
    from engine.profile.schema import Profile
    key = fitcache.shape_key(Profile(), "NVIDIA H100 80GB HBM3", 85 << 30)
    assert fitcache.lookup(key, False) == {"fits": None, "fails": None}
    fitcache.record(key, False, fails=8)
    fitcache.record(key, False, fits=4)
    fitcache.record(key, False, fits=16)          # contradicts a known failure: ignored
    assert fitcache.lookup(key, False) == {"fits": 4, "fails": 8}
    assert fitcache.lookup(key, True) == {"fits": None, "fails": None}
    other = dict(key, max_seq_len=4096)
    assert fitcache.lookup(other, False)["fits"] is None
    assert fitcache.cache_path().parent == home


def test_loader_batch_for_auto():
    from engine.profile.schema import TrainingSection
    t = TrainingSection(micro_batch="auto", grad_accum=4)
    assert bk.loader_batch(t) == (16, 1)
    t.effective_batch = 24
    assert bk.loader_batch(t) == (24, 1)
    assert bk.loader_batch(TrainingSection(micro_batch=2, grad_accum=8)) == (2, 8)


def test_relaunch_can_be_left_to_a_supervisor(tmp_path, monkeypatch):
    """TUNETOP_NO_RELAUNCH=1 (and torchrun): exit with EXIT_RELAUNCH and a resumable `end` instead of exec."""
    from engine.events import EventWriter, read_all
    monkeypatch.setenv(bk.NO_RELAUNCH, "1")
    writer = EventWriter(tmp_path / "events.jsonl")
    status = bk.RelaunchRequest(tmp_path, "step 6: out of memory in the optimizer step", 1).execute(writer)
    end = read_all(tmp_path / "events.jsonl")[-1]
    assert status == bk.EXIT_RELAUNCH == 75
    assert end["type"] == "end" and end["status"] == "failed" and "tunetop resume" in end["hint"]
