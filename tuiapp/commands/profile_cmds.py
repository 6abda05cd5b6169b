"""`tunetop validate PROFILE` and `tunetop profiles`."""
from __future__ import annotations

from engine import paths

# The handlers import what they use: `tunetop --help` builds every parser and should load nothing else.


def register(sub) -> None:
    s = sub.add_parser("validate", help="check a profile and its data without training")
    s.add_argument("profile", help="profile name or path to a .toml file")
    s.set_defaults(handler=cmd_validate)
    s = sub.add_parser("profiles", help="list bundled profiles and yours (yours shadow bundled ones of the same name)")
    s.set_defaults(handler=cmd_profiles)


def cmd_validate(args) -> int:
    from engine.data import load_data
    from engine.data.preview_text import token_lines
    from engine.profile import load_named, preflight

    from . import distributed_flags, preview_cmd
    # Every check runs before anything is printed: "valid" is never followed by an error.
    profile = load_named(args.profile)
    preflight.check(profile)
    report = load_data(profile.data, keep=preview_cmd.KEEP_FOR_COUNTS)
    # Token counts, template-skipped rows, truncation (train and eval): the engine's own code, in a
    # subprocess (it needs a tokenizer); a refusal there is raised before "valid" is printed.
    tokens = preview_cmd.engine_summary(str(profile.source))
    preview_cmd.raise_if_refused(tokens)
    layout = distributed_flags.describe(profile)   # [distributed] on this machine (LayoutError before "valid")
    t = profile.training
    print(f"profile {profile.name} ({profile.source}): valid")
    print(f"  model: {profile.model.name_or_path} ({profile.method.type})")
    print("  " + report.summary().replace("\n", "\n  "))
    if tokens.get("ok"):
        print("  " + "\n  ".join(token_lines(tokens)))
    else:
        print(f"  tokens: not checked ({tokens.get('error', 'unknown reason')})")
    world = f" x {profile.world_size} processes" if (profile.world_size or 1) > 1 else ""
    print(f"  training: micro-batch {t.micro_batch} x accumulation {t.grad_accum}{world}"
          f" = effective batch {profile.effective_batch or 'auto'}, max_seq_len {t.max_seq_len}, "
          + (f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"))
    if layout is not None:
        print(f"  layout: {layout.describe()} ({layout.reason})")
    return 0


def cmd_profiles(args) -> int:
    from engine.profile import ProfileError, load_named
    bundled = {f.stem: f for f in sorted(paths.BUNDLED_PROFILES.glob("*.toml"))}
    user_dir = paths.user_profiles()
    yours = {f.stem: f for f in sorted(user_dir.glob("*.toml"))} if user_dir.is_dir() else {}
    rows = []
    for name in sorted(set(bundled) | set(yours)):
        path = yours.get(name) or bundled[name]
        source = ("yours, shadows bundled" if name in bundled else "yours") if name in yours else "bundled"
        try:
            desc = load_named(str(path)).description
        except ProfileError:
            desc = "(invalid: `tunetop validate` says why)"
        rows.append((name, source, desc))
    width = max([len(r[0]) for r in rows] + [4])
    swidth = max([len(r[1]) for r in rows] + [6])
    print(f"{'NAME':<{width}}  {'SOURCE':<{swidth}}  DESCRIPTION")
    for name, source, desc in rows:
        print(f"{name:<{width}}  {source:<{swidth}}  {desc}".rstrip())
    print(f"\nbundled: {paths.BUNDLED_PROFILES} (read-only)\nyours:   {user_dir} "
          "(a profile of yours with a bundled profile's name is used instead of it)")
    return 0
