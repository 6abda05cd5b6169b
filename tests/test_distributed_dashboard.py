"""What a run of several processes looks like on the dashboard and in `watch`'s backoff lines: world size, nodes,
strategy and why, the fullest rank's memory, and which rank ran out of memory. Synthetic events shaped like the
engine's (tests/test_distributed.py checks the engine writes them); single-process runs look as before."""
from __future__ import annotations

import pytest

from engine.runstate import RunState
from tuiapp import fmt
from tuiapp.app import TunetopApp

from .tui_helpers import GIB, demo_events, drive, ev, make_run, screen_text, two_gpus, wait_text

T0 = 1_700_000_000.0
WHY = "the estimate fits one GPU: data parallel (a full copy per GPU) is fastest"


def ddp_events(steps: int = 6) -> list[dict]:
    start = ev("start", T0, run_id="x", profile="demo", model="/m/tiny", method="lora", device="cuda:0",
               precision="bf16", micro_batch=4, grad_accum=2, effective_batch=16, total_steps=10, world_size=2,
               nodes=1, strategy="ddp", strategy_reason=WHY,
               ranks=[{"rank": 0, "device": "cuda:0 NVIDIA H100"}, {"rank": 1, "device": "cuda:1 NVIDIA A100"}])
    out = [start]
    for i in range(1, steps + 1):
        ranks = [{"rank": 0, "rss": 3 * GIB, "cuda_peak": (8 + i % 2) * GIB},
                 {"rank": 1, "rss": 3 * GIB, "cuda_peak": int(9.5 * GIB) if i == 3 else 9 * GIB}]
        out.append(ev("step", T0 + i, step=i, total_steps=10, loss=2.0 - i * 0.1, lr=1e-4, tokens_seen=i * 100,
                      memory={"cuda_peak": 8 * GIB}, memory_ranks=ranks))
        if i == 2:
            out.append(ev("backoff", T0 + i + 0.5, step=3, reason="oom", action="split",
                          before={"micro_batch": 4, "grad_accum": 2, "gradient_checkpointing": False, "max_seq_len": 256},
                          after={"micro_batch": 2, "grad_accum": 4, "gradient_checkpointing": False, "max_seq_len": 256},
                          message="step 3: out of memory on rank 1 (9.5 GiB in use); micro-batch 4 -> 2, accumulation "
                                  "2 -> 4, effective batch 16 kept", oom_rank=1, oom_ranks=[1],
                          ranks=[{"rank": 0, "micro_batch": 2, "oom": False}, {"rank": 1, "micro_batch": 2, "oom": True}]))
    return out


def test_run_state_folds_the_layout_and_every_rank_memory():
    s = RunState("x", path=None)
    for e in ddp_events():
        s.apply(e)
    assert (s.world_size, s.nodes, s.strategy, s.strategy_reason) == (2, 1, "ddp", WHY) and s.distributed
    # The highest CUDA peak seen per rank, the latest RSS; the fullest GPU is rank 1's 9.5 GiB of step 3.
    assert s.rank_memory == ((0, 9 * GIB, 3 * GIB), (1, int(9.5 * GIB), 3 * GIB))
    assert s.fullest_rank == (1, int(9.5 * GIB), "cuda")
    assert s.last_oom_rank == 1 and s.micro_batch == 2
    # A resume on one process: a new segment, nothing distributed left over.
    s.apply(ev("start", T0 + 100, total_steps=10, micro_batch=4, grad_accum=4, world_size=1, strategy="single"))
    assert not s.distributed and s.rank_memory == () and s.fullest_rank is None
    # CPU ranks (gloo) report only RSS: the fullest is by RSS.
    s.apply(ev("start", T0 + 200, world_size=2, strategy="ddp"))
    s.apply(ev("step", T0 + 201, step=7, memory_ranks=[{"rank": 0, "rss": 2 * GIB}, {"rank": 1, "rss": 3 * GIB}]))
    assert s.fullest_rank == (1, 3 * GIB, "rss")
    # Events of one process (and those written before the layout fields existed) fold as before.
    one = RunState("y", path=None)
    for e in demo_events(steps=3):
        one.apply(e)
    assert (one.world_size, one.strategy, one.rank_memory, one.distributed) == (1, "", (), False)


def test_backoff_text_names_the_rank_only_with_several():
    e = next(e for e in ddp_events() if e["type"] == "backoff")
    text = fmt.backoff_text(e)
    assert text.startswith("backoff at step 3: micro-batch 4→2, accumulation 2→4") and "on rank 1" in text
    terse = {k: v for k, v in e.items() if k != "message"}       # no message: the rank still shows
    assert "out of memory on rank 1" in fmt.backoff_text(terse)
    apart = {**terse, "ranks": [{"rank": 0, "micro_batch": 2}, {"rank": 1, "micro_batch": 1}]}
    assert "micro-batch per rank: rank 0 2, rank 1 1" in fmt.backoff_text(apart)
    single = {k: v for k, v in terse.items() if k not in ("oom_rank", "oom_ranks", "ranks")}
    assert "rank" not in fmt.backoff_text(single)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_summary_shows_world_size_strategy_and_the_fullest_rank(tmp_path, size):
    root = tmp_path / "runs"
    make_run(root, "20250101-000000-demo", demo_events(steps=5))
    make_run(root, "20250102-000000-ddp", ddp_events())
    app = TunetopApp(gpu_source=two_gpus(), runs_root=root)

    async def scenario(pilot):
        # Even at 80x24: the strategy and world size beside the model, the fullest GPU in the batch line.
        await wait_text(pilot, "lora · cuda:0 bf16 · ddp×2", "batch 2×4 = 16 · peak 9.5 GiB rank 1")
        if size == (120, 40):
            await wait_text(pilot, "ddp · world size 2", "why: the estimate fits one GPU",
                            "fullest rank 1: GPU peak 9.5 GiB (lowest 9.0 GiB)", "out of memory on rank 1")
        await pilot.press("down")      # the single-process run: the summary as it always was
        await pilot.pause()
        assert await _until(pilot, lambda: "batch 8×2 = 16 · RSS 500.0 MiB" in screen_text(app))
        text = screen_text(app)
        assert "world size" not in text and "fullest rank" not in text and "ddp×" not in text
    drive(app, size, scenario)


async def _until(pilot, predicate, timeout: float = 10.0) -> bool:
    from .helpers import await_until
    return await await_until(pilot, predicate, timeout)
