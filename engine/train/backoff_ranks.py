"""Several processes: which rank ran out of memory, and what every rank did about it (the `backoff` event).

An out-of-memory error on one rank makes every rank abandon the attempt together (backoff_split.any_rank),
but only the failing rank knows what failed; the others see "another rank". Before climbing the ladder,
the ranks exchange what they saw (one all_gather_object: only after an OOM, so it costs nothing in a
healthy step) and decide together whether the step can be retried here: if the gradients or the memory
did not come back on any rank, every rank relaunches, none retries alone (which would hang the others in
the next collective). After the rung, a second exchange records each rank's new sizes, so the event says
what every rank does from now on, not what rank 0 assumes. One process: nothing is exchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .backoff_split import Failure, distributed


def _gather(mine: dict) -> list[dict]:
    import torch.distributed as dist
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return [e for e in everyone if isinstance(e, dict)]


@dataclass
class RankReport:
    seen: list[dict]          # per rank: rank, oom, phase, error, memory, restored, released

    @classmethod
    def gather(cls, rank: int, failure: Failure) -> "RankReport | None":
        """Every rank calls this at the same point after a failed attempt; None in one process."""
        if not distributed():
            return None
        mine = {"rank": rank, "oom": failure.phase != "another rank", "phase": failure.phase,
                "error": failure.error, "memory": failure.memory, "restored": failure.restored,
                "released": failure.released}
        return cls(sorted(_gather(mine), key=lambda e: e["rank"]))

    @property
    def oom_ranks(self) -> list[int]:
        return [e["rank"] for e in self.seen if e["oom"]]

    @property
    def oom_rank(self) -> int | None:
        ranks = self.oom_ranks
        return ranks[0] if ranks else None

    def merged(self, failure: Failure) -> Failure:
        """The failure as every rank must treat it: the failing rank's phase, error and memory; restored and
        released only when they are on every rank."""
        first = next((e for e in self.seen if e["oom"]), None)
        out = replace(failure, restored=all(e["restored"] for e in self.seen),
                      released=all(e["released"] for e in self.seen))
        if first is not None:
            out = replace(out, phase=first["phase"], error=first["error"], memory=first["memory"])
        return out

    def where(self, phase_words: dict) -> str:
        """"rank 1" (or "ranks 0, 1"), with the phase when it says more than "forward"."""
        ranks = self.oom_ranks
        if not ranks:
            return "another rank"
        who = f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"
        first = next(e for e in self.seen if e["oom"])
        phase = phase_words.get(first["phase"], "")
        return who + (f" {phase}" if phase else "")

    def fields(self, rank: int, after: dict, split: int) -> dict:
        """The event's fields: oom_rank, oom_ranks and ranks (each rank's new sizes, gathered again)."""
        mine = {"rank": rank, "micro_batch": after["micro_batch"], "grad_accum": after["grad_accum"],
                "split": split, "gradient_checkpointing": after["gradient_checkpointing"],
                "max_seq_len": after["max_seq_len"]}
        did = {e["rank"]: e for e in _gather(mine)}
        ranks = [{**did.get(e["rank"], {"rank": e["rank"]}), "oom": e["oom"], "memory": e["memory"],
                  **({"phase": e["phase"]} if e["oom"] else {})} for e in self.seen]
        return {"oom_rank": self.oom_rank, "oom_ranks": self.oom_ranks, "ranks": ranks}
