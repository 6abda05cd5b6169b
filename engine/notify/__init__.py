"""Notifications, sent by the engine (the dashboard is usually closed when a run ends at 3 a.m.).

    attach(writer, run_dir, profile)   called once by engine/train/main.py on rank 0: reads config.toml,
                                       applies the profile's [notify], subscribes the notifier and the
                                       stall watchdog to the run's EventWriter
    settings(profile)                  the merged NotifyConfig (what `tunetop notify` shows and checks)

rules.py decides what is worth a message, deliver.py sends it (apprise URLs and the command hook, in a
background thread with a timeout), watchdog.py records stalls. Nothing here imports torch or textual.
"""
from __future__ import annotations

from pathlib import Path

from .. import events as ev
from .. import userconfig
from ..userconfig import ConfigError, NotifyConfig, redact
from .rules import Notice, Rules

__all__ = ["attach", "settings", "describe", "Notice", "Rules", "ConfigError"]


def settings(profile=None, check_channels: bool = True) -> NotifyConfig:
    """config.toml's [notify] with the profile's [notify] on top. Raises ConfigError."""
    cfg = userconfig.load(check_channels=False)
    section = getattr(profile, "notify", None)
    if section is not None:
        if not section.enabled:
            cfg.urls, cfg.command = [], []
        source = str(getattr(profile, "source", None) or "profile")
        table = {k: getattr(section, k) for k in ("on", "command") if getattr(section, k)}
        if section.eval_rising:
            table["eval_rising"] = section.eval_rising
        userconfig.apply(cfg, table, source, "notify", allowed=("on", "command", "eval_rising"))
    if check_channels:
        userconfig.check(cfg, str(userconfig.config_path()))
    return cfg


def describe(cfg: NotifyConfig) -> str:
    """One line for the run's log: channels redacted, never the URLs themselves."""
    if not cfg.active:
        return f"notifications off (no urls or command in {userconfig.config_path()})"
    parts = [redact(u) for u in cfg.urls]
    if cfg.command:
        parts.append(f"command {Path(cfg.command[0]).name}")
    return f"notifications to {', '.join(parts)} on {', '.join(cfg.on) or 'nothing'}"


def attach(writer, run_dir: Path, profile=None):
    """Subscribe the notifier (when a channel is configured) and the stall watchdog to the writer.

    Never raises: a broken config.toml turns notifications off with a warning event, and training runs.
    Returns the Notifier or None.
    """
    from .deliver import Notifier
    from .watchdog import StallWatchdog

    watchdog = StallWatchdog(writer)
    writer.subscribe(watchdog.on_event, on_close=watchdog.close)
    try:
        cfg = settings(profile)
    except ConfigError as exc:
        writer.write("log", level="warning", message=f"notifications off: {exc.message}"
                     + (f" ({exc.hint})" if exc.hint else ""))
        return None
    writer.write("log", level="info", message=describe(cfg))
    if not cfg.active:
        return None
    notifier = Notifier(cfg, run_dir, writer, history=ev.read_all(Path(run_dir) / "events.jsonl"))
    writer.subscribe(notifier.on_event, on_close=notifier.flush)
    return notifier
