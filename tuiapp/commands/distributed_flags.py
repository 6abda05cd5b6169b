"""`tunetop run`'s flags for several GPUs and machines; they override the profile's [distributed] section
and obey the same rules (engine/distributed/layout.py), so a bad flag is reported like a bad field."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the flags are added for --help without loading the validator or the layout planner
    from engine.distributed import Layout
    from engine.profile import Profile

FLAGS = ("gpus", "processes", "strategy", "nnodes", "node_rank", "rdzv_endpoint")


def add_flags(s) -> None:
    g = s.add_argument_group("several GPUs or machines (override the profile's [distributed] section)")
    g.add_argument("--gpus", metavar="LIST", help='GPUs to train on: "0,1" or "all" (one process per GPU)')
    g.add_argument("--processes", type=int, metavar="N", help="processes per machine (CPU processes where "
                                                                 "there is no GPU)")
    g.add_argument("--strategy", choices=("auto", "ddp", "fsdp", "model_parallel"))
    g.add_argument("--nnodes", type=int, metavar="N", help="machines taking part (each runs this command)")
    g.add_argument("--node-rank", type=int, metavar="R", help="this machine's number, 0 to nnodes-1")
    g.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="machine 0's address and a free port")


def apply(profile: Profile, args) -> Profile:
    """The profile with the flags given; validated again (errors name the field the flag sets)."""
    from engine.distributed.layout import with_overrides
    from engine.profile import validate
    values = {name: getattr(args, name, None) for name in FLAGS}
    if all(v is None for v in values.values()):
        return profile
    changed = with_overrides(profile, **values)
    validated = validate(changed.to_dict(), source=profile.source)
    validated.name = profile.name
    return validated


def describe(profile: Profile) -> Layout | None:
    """The layout this machine will launch (LayoutError when it cannot); None for a plain single process."""
    from engine.distributed.launching import plan
    layout = plan(profile)
    return None if layout.strategy == "single" else layout
