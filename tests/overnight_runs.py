"""Real engine runs for the notification, report, compare and history tests, made ONCE per test session.

Five short runs on the tiny model are launched together (detached, like a user's overnight runs), with a
config.toml whose [notify] points at HTTP endpoints served here on 127.0.0.1 (apprise's json:// plugin)
and at a command hook that records its environment:

    completed  8 steps, simulated OOM at steps 2 and 3 (two backoffs: only the first notifies), step 7 stalls
               for 16 s (one "stalled" message); one notify URL hangs forever
               (timeout_s = HANG_TIMEOUT_S): training must not wait for it
    nan        TUNETOP_FAULT_NAN_STEP=3: stops before step 3's optimizer step, checkpoint-2 saved
    nan_warn   the same with training.on_nan = "warn": a warning, a "nan" message, and it trains on
    stopped    SIGTERM after its first step
    failed     the disk "fills up" while the first checkpoint is written (TUNETOP_FAULT_ENOSPC_AT)
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from engine import events, rundir

from .helpers import merged, run_cli, toml_text, wait_until

HANG_TIMEOUT_S = 6.0


class Endpoint:
    """An HTTP server on 127.0.0.1 that records each POSTed JSON body (or never answers, hang=True)."""

    def __init__(self, hang: bool = False):
        self.received: list[dict] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hang:
                    outer.received.append({"hung": True})
                    outer.release.wait(120)
                    return
                try:
                    outer.received.append(json.loads(body))
                except ValueError:
                    outer.received.append({"raw": body.decode(errors="replace")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def for_run(self, run_id: str) -> list[dict]:
        return [m for m in self.received if run_id in str(m.get("title", ""))]

    def close(self):
        self.release.set()
        self.server.shutdown()


HOOK = """import json, os, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("TUNETOP_")}) + "\\n")
"""


@dataclass
class Overnight:
    root: Path
    env: dict
    good: Endpoint
    hang: Endpoint
    hook_log: Path
    runs: dict = field(default_factory=dict)     # name -> run dir

    def hooks(self, run_dir: Path) -> list[dict]:
        if not self.hook_log.exists():
            return []
        rows = [json.loads(line) for line in self.hook_log.read_text().splitlines() if line.strip()]
        return [r for r in rows if r.get("TUNETOP_RUN_ID") == run_dir.name]

    def cli(self, *args, **kw):
        return run_cli(*args, env=self.env, **kw)


_cache: dict = {}


def overnight() -> Overnight:
    if "o" not in _cache:
        _cache["o"] = _make()
    return _cache["o"]


def _make() -> Overnight:
    root = Path(tempfile.mkdtemp(prefix="tunetop-overnight-"))
    good, hang = Endpoint(), Endpoint(hang=True)

    def cleanup():
        good.close()
        hang.close()
        shutil.rmtree(root, ignore_errors=True)
    atexit.register(cleanup)

    config = root / "config"
    (config / "tunetop").mkdir(parents=True)
    hook, hook_log = root / "hook.py", root / "hook.jsonl"
    hook.write_text(HOOK)
    (config / "tunetop" / "config.toml").write_text(
        "[notify]\n"
        f'urls = ["{good.url("ok")}", "{hang.url("hang")}"]\n'
        f'command = ["{sys.executable}", "{hook}", "{hook_log}"]\n'
        f"timeout_s = {HANG_TIMEOUT_S}\n")
    env = {"TUNETOP_HOME": str(root / "home"), "XDG_CONFIG_HOME": str(config)}
    o = Overnight(root, env, good, hang, hook_log)

    plans = {
        "completed": ({"training": {"max_steps": 8, "save_steps": 2, "learning_rate": 1e-2}},
                      # two OOMs, then step 7 hangs for 16 s: the stall watchdog (checking each second) fires after max(6 s, 2 x the
                      # median step time); 10 x (the default) is too close to 16 s on a CPU shared with other tests
                      {"TUNETOP_FAULT_OOM_STEPS": "2,3", "TUNETOP_FAULT_SLOW_STEP_S": "16@7", "TUNETOP_STALL_MIN_S": "6",
                       "TUNETOP_STALL_FACTOR": "2"}),
        "nan": ({"training": {"max_steps": 6, "save_steps": 100, "learning_rate": 5e-3}},
                {"TUNETOP_FAULT_NAN_STEP": "3"}),
        "nan_warn": ({"training": {"max_steps": 4, "save_steps": 100, "on_nan": "warn"}},
                     {"TUNETOP_FAULT_NAN_STEP": "2"}),
        "stopped": ({"training": {"max_steps": 200, "save_steps": 100}}, {}),
        "failed": ({"training": {"max_steps": 6, "save_steps": 2}},
                   {"TUNETOP_FAULT_ENOSPC_AT": "checkpoint:model@2"}),     # the disk fills at the first save
    }
    for name, (overrides, faults) in plans.items():
        profile = root / f"{name}.toml"
        profile.write_text(toml_text(merged(overrides)))
        out = run_cli("run", "--detach", str(profile), env={**env, **faults})
        assert out.returncode == 0, out.stdout + out.stderr
        o.runs[name] = _newest(root, name)

    stopped = o.runs["stopped"]
    wait_until(lambda: any(e["type"] == "step" for e in events.read_all(stopped / "events.jsonl")), timeout=300,
             what="the stopped run's first step")
    os.kill(rundir.alive_pid(stopped), signal.SIGTERM)
    for name, run_dir in o.runs.items():
        # The end event, then the process gone (it delivers the last notices before it exits).
        wait_until(lambda: any(e["type"] == "end" for e in events.read_all(run_dir / "events.jsonl"))
                 and rundir.alive_pid(run_dir) is None, timeout=400, interval=0.2, what=f"run {name} to exit")
    return o


def _newest(root: Path, name: str) -> Path:
    runs = sorted((root / "home" / "runs").glob(f"*-{name}"))
    assert runs, f"no run directory for {name}"
    return runs[-1]
