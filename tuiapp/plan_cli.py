"""`tunetop estimate` and `tunetop fit`: the run builder's VRAM estimate and "what can I train here?" in a
plain terminal. The figures come from engine.plan, the same code the builder's estimate panel calls."""
from __future__ import annotations

import argparse

from engine.profile.schema import METHODS, OPTIMIZERS, PRECISIONS

# engine.plan and the validator are imported inside the commands: `tunetop --help` and the dashboard start
# without them.

# flag -> (section, key): each value goes through the profile validator, so a bad flag reads like a bad field.
_OVERRIDES = {"model": ("model", "name_or_path"), "method": ("method", "type"),
              "micro_batch": ("training", "micro_batch"), "grad_accum": ("training", "grad_accum"),
              "seq": ("training", "max_seq_len"), "lora_r": ("method", "lora_r"),
              "checkpointing": ("training", "gradient_checkpointing"), "optimizer": ("training", "optimizer"),
              "precision": ("training", "precision")}


def add_parsers(sub) -> None:
    s = sub.add_parser("estimate", help="peak GPU memory of a profile (or of --model ...) and whether it fits",
                       description="Estimate the peak GPU memory of one training step from config.json alone "
                                   "(local folder, HF cache or the bundled table), with a verdict per GPU.")
    s.add_argument("profile", nargs="?", help="profile name or .toml path (optional with --model)")
    s.add_argument("--model", help="local model folder or hub id")
    s.add_argument("--method", choices=METHODS)
    s.add_argument("--micro-batch", dest="micro_batch", type=_int_or_auto, metavar="N|auto")
    s.add_argument("--grad-accum", dest="grad_accum", type=int, metavar="N")
    s.add_argument("--seq", type=int, metavar="TOKENS", help="max_seq_len")
    s.add_argument("--lora-r", dest="lora_r", type=int, metavar="R")
    s.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="gradient checkpointing on/off")
    s.add_argument("--optimizer", choices=OPTIMIZERS)
    s.add_argument("--precision", choices=PRECISIONS, help="auto is resolved per GPU, as the engine will")
    s.add_argument("--gpu", metavar="NAME", help='compare with a common card ("4090", "A100 80", "H100", "T4")')
    s.add_argument("--gpus", type=int, metavar="N", help="the peak per GPU over N GPUs, per strategy")
    s.add_argument("--strategy", choices=("auto", "ddp", "fsdp", "model_parallel"),
                   help="with --gpus: only this strategy (default: all three)")
    s.set_defaults(handler=cmd_estimate)
    s = sub.add_parser("fit", help="what can I train here? the largest model per method for each GPU "
                                   "(bundled table and your HF cache)")
    s.add_argument("--gpu", metavar="NAME", help="a common card instead of the detected GPUs")
    s.add_argument("--seq", type=int, default=2048, metavar="TOKENS", help="sequence length (default 2048)")
    s.add_argument("--micro-batch", dest="micro_batch", type=int, default=1, metavar="N", help="default 1")
    s.add_argument("--count", type=int, default=1, metavar="N",
                   help="N of these GPUs: the largest model per method and strategy (ddp, fsdp, model_parallel)")
    s.set_defaults(handler=cmd_fit)


def _int_or_auto(text: str):
    """An int, or the text as it was: the profile validator then says what is wrong with it."""
    try:
        return int(text)
    except ValueError:
        return text


def cmd_estimate(args) -> int:
    from engine.plan import check_profile, estimate_text
    from engine.profile import Problem, Profile, ProfileError, check_field, load_named
    if not args.profile and not args.model:
        raise ProfileError([Problem("", "give a profile or --model", "e.g. `tunetop estimate demo` or "
                                    "`tunetop estimate --model meta-llama/Llama-3.1-8B --method qlora`")])
    profile = load_named(args.profile) if args.profile else Profile(name="estimate")
    problems = []
    for flag, (section, key) in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is None:
            continue
        error = check_field(section, key, value)
        if error:
            problems.append(Problem("", f"--{flag.replace('_', '-')}: {error}"))
        else:
            setattr(getattr(profile, section), key, value)
    if args.strategy and not args.gpus:
        problems.append(Problem("", "--strategy needs --gpus N (how many GPUs to lay the run out over)"))
    if args.gpus is not None and args.gpus < 2:
        problems.append(Problem("", f"--gpus {args.gpus}: a layout needs at least 2 GPUs",
                                "leave --gpus out for one GPU"))
    if problems:
        raise ProfileError(problems)
    cards, note = _cards(args.gpu)
    fc = check_profile(profile, cards)
    print(estimate_text(profile.model.name_or_path, fc, note))
    if fc.available and args.gpus:   # several GPUs: engine/distributed/report.py
        from engine.distributed.report import profile_layout_text
        card = min(cards, key=lambda c: c.total_bytes)
        print("\n" + profile_layout_text(profile, args.gpus, args.strategy, card.name, card.total_bytes))
    return 0 if fc.available else 2


def cmd_fit(args) -> int:
    from engine.plan import capacity, capacity_text
    from engine.profile import Problem, ProfileError
    if args.seq < 8 or args.micro_batch < 1 or args.count < 1:
        raise ProfileError([Problem("", "--seq must be at least 8, --micro-batch and --count at least 1")])
    cards, note = _cards(args.gpu)
    if note:
        print(note + "\n")
    if args.count > 1:   # several GPUs: per method and strategy (engine/distributed/report.py)
        from engine.distributed.report import fit_count_text
        for i, card in enumerate(cards):
            print(("\n" if i else "") + fit_count_text(card.name, card.total_bytes, args.count, args.seq,
                                                      args.micro_batch))
        return 0
    for i, card in enumerate(cards):
        print(("\n" if i else "") + capacity_text(card, args.seq, args.micro_batch,
                                                   capacity(card.total_bytes, args.seq, args.micro_batch,
                                                            capability=card.compute_capability)))
    return 0


def _cards(name: str | None):
    """(cards to compare with, a note saying where they came from)."""
    from engine.plan import common_cards, detect, pick_card
    from engine.profile import Problem, ProfileError
    if name:
        card = pick_card(name)
        if card is None:
            known = ", ".join(c.name for c in common_cards())
            raise ProfileError([Problem("", f'--gpu "{name}" is not a card tunetop knows', f"known: {known}")])
        return [card], None
    cards, why = detect()
    if cards:
        return cards, None
    return common_cards(), f"{why}: compared with common cards (--gpu NAME picks one)"
