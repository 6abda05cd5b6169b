"""`tunetop validate PROFILE` and `tunetop profiles`."""
from __future__ import annotations

from engine.data import load_data
from engine.profile import ProfileError, list_profiles, load_named, preflight


def register(sub) -> None:
    s = sub.add_parser("validate", help="check a profile and its data without training")
    s.add_argument("profile", help="profile name or path to a .toml file")
    s.set_defaults(handler=cmd_validate)
    s = sub.add_parser("profiles", help="list bundled and saved profiles")
    s.set_defaults(handler=cmd_profiles)


def cmd_validate(args) -> int:
    profile = load_named(args.profile)
    print(f"profile {profile.name} ({profile.source}): valid")
    print(f"  model: {profile.model.name_or_path} ({profile.method.type})")
    preflight.check(profile)
    report = load_data(profile.data)
    print("  " + report.summary().replace("\n", "\n  "))
    t = profile.training
    print(f"  training: micro-batch {t.micro_batch} x accumulation {t.grad_accum}"
          f" = effective batch {profile.effective_batch or 'auto'}, max_seq_len {t.max_seq_len}, "
          + (f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"))
    return 0


def cmd_profiles(args) -> int:
    for path in list_profiles():
        try:
            desc = load_named(str(path)).description
        except ProfileError:
            desc = "(invalid: `tunetop validate` says why)"
        print(f"{path.stem:<24} {desc}")
    return 0
