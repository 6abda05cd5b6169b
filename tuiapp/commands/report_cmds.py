"""`tunetop report`, `compare` and `notify`: read run directories (and config.toml), never touch a run."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from engine import rundir
from engine.errors import TunetopError


def register(sub) -> None:
    s = sub.add_parser("report", help="a run's summary: outcome, curves, memory, checkpoints, next commands")
    s.add_argument("run", nargs="?", default="last", help="run id, unique prefix, path, or last (default)")
    s.add_argument("--format", choices=("text", "md", "html"), default="text",
                   help="text (terminal, default), md (plus SVG charts beside it) or html (one self-contained file)")
    s.add_argument("--out", type=Path, help="file to write (md/html; default: report.md/.html in the run directory)")
    s.set_defaults(handler=cmd_report)
    s = sub.add_parser("compare", help="2-6 runs side by side: overlaid loss, differing settings, final figures")
    s.add_argument("runs", nargs="+", help="run ids, unique prefixes or paths")
    s.add_argument("--x", choices=("step", "tokens"), default="step", help="x axis of the charts")
    s.set_defaults(handler=cmd_compare)
    s = sub.add_parser("notify", help="check config.toml's [notify] and send a test message to every channel")
    s.add_argument("--profile", help="apply this profile's [notify] section on top")
    s.add_argument("--dry-run", action="store_true", help="only check the settings, send nothing")
    s.set_defaults(handler=cmd_notify)


def cmd_report(args) -> int:
    from engine.report import render, summarize, write_report
    run_dir = rundir.resolve(args.run)
    if args.format == "text":
        s = summarize(run_dir, require_steps=True)
        sys.stdout.write(render.text(s, width=min(110, shutil.get_terminal_size((100, 24)).columns)))
        return 0
    out = args.out or run_dir / f"report.{args.format}"
    write_report(run_dir, out, args.format)
    print(f"wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from engine.report import compare
    dirs = [rundir.resolve(r) for r in args.runs]
    runs = compare.load(dirs)
    if not any(r.loss for r in runs):
        raise TunetopError("none of these runs has a training step yet", "compare runs once they have trained")
    sys.stdout.write(compare.text(runs, x=args.x, width=min(140, shutil.get_terminal_size((100, 24)).columns)))
    return 0


def cmd_notify(args) -> int:
    from engine import notify, userconfig
    from engine.notify.deliver import Notifier
    profile = None
    if args.profile:
        from engine.profile import load_named
        profile = load_named(args.profile)
    cfg = notify.settings(profile)
    print(notify.describe(cfg))
    if args.dry_run or not cfg.active:
        return 0
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tunetop-notify-") as tmp:
        cfg.attach_report = False
        sender = Notifier(cfg, Path(tmp) / "notify-test")
        (Path(tmp) / "notify-test").mkdir()
        sender._queue.put(notify.Notice(event="test", title="tunetop: test notification",
                                        body="If you read this, tunetop can reach you.", status="test"))
        sender.flush()
    failed = len(cfg.urls) + bool(cfg.command) - len(sender.sent)
    for event, channel in sender.sent:
        print(f"  sent to {channel}")
    if failed:
        raise TunetopError(f"{failed} channel(s) did not take the test message",
                           f"check the URLs and the command in {userconfig.config_path()}")
    return 0
