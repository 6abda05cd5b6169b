"""Notifications are sent by the engine itself: real runs (tests/overnight_runs.py) that complete, fail, stop,
hit a NaN loss or back off from an OOM each send exactly the expected messages to an apprise json:// endpoint
on 127.0.0.1 and to a command hook; a hanging endpoint does not hold training up."""
from __future__ import annotations

import base64
import math

import pytest

from engine import events, rundir, userconfig
from engine.notify import Rules
from engine.userconfig import ConfigError

from .helpers import run_cli
from .overnight_runs import HANG_TIMEOUT_S


def _events(run_dir):
    return events.read_all(run_dir / "events.jsonl")


def _titles(messages):
    return [m["title"] for m in messages]


@pytest.mark.slow
def test_completed_run_with_two_oom_backoffs_and_a_stall_sends_backoff_once_stalled_then_completed(o):
    run = o.runs["completed"]
    assert rundir.read_state(run).status == "completed"
    assert sum(e["type"] == "backoff" for e in _events(run)) >= 2      # two OOMs, one message
    got = o.good.for_run(run.name)
    assert _titles(got) == [f"tunetop: {run.name} out-of-memory backoff", f"tunetop: {run.name} stalled",
                            f"tunetop: {run.name} completed"]
    assert "step 2" in got[0]["message"]
    assert "no training progress" in got[1]["message"] and "after step 6" in got[1]["message"]
    assert "completed at step 8/8" in got[2]["message"]
    stalls = [e for e in _events(run) if e.get("code") == "stalled"]
    assert len(stalls) == 1 and stalls[0]["level"] == "warning"       # recorded in the run directory too
    # The end message carries the HTML report (json:// takes attachments).
    attachment = got[2]["attachments"][0]
    html = base64.b64decode(attachment["base64"]).decode()
    assert attachment["filename"] == "report.html" and "<svg" in html and run.name in html
    hooks = o.hooks(run)
    assert [h["TUNETOP_EVENT"] for h in hooks] == ["backoff", "stalled", "completed"]
    end = hooks[2]
    assert end["TUNETOP_STATUS"] == "completed" and end["TUNETOP_STEP"] == "8" and end["TUNETOP_TOTAL_STEPS"] == "8"
    assert math.isfinite(float(end["TUNETOP_LOSS"])) and end["TUNETOP_RUN_DIR"] == str(run)
    assert end["TUNETOP_RUN_ID"] == run.name and end["TUNETOP_OUTPUT"] == "adapter"
    assert end["TUNETOP_REPORT"] == str(run / "report.html")


@pytest.mark.slow
def test_a_hanging_endpoint_never_holds_training_up(o):
    run = o.runs["completed"]
    evs = _events(run)
    assert len(o.hang.for_run(run.name)) == 0 and len(o.hang.received) >= 2   # it was asked, it never answered
    timeouts = [e for e in evs if e.get("code") == "notify_failed"]
    # Abandoned either by the engine's deadline ("timed out") or, a moment earlier, by apprise's own socket
    # timeout of the same length ("failed: ..."): both name the redacted URL, neither holds training up.
    assert len(timeouts) == 3 and all(("json://*** timed out" in e["message"] or "json://*** failed" in e["message"])
                                      for e in timeouts), timeouts
    # The first backoff's message was being delivered while training went on: the next step came at once.
    first_backoff = next(e for e in evs if e["type"] == "backoff")
    next_step = next(e for e in evs if e["type"] == "step" and e["t"] > first_backoff["t"])
    assert next_step["t"] - first_backoff["t"] < HANG_TIMEOUT_S, "training waited for the notification"
    # At the end the engine waits at most the timeout for the last message, then exits.
    end = next(e for e in evs if e["type"] == "end")
    assert timeouts[-1]["t"] - end["t"] < HANG_TIMEOUT_S + 3


@pytest.mark.slow
def test_nan_loss_stops_with_a_checkpoint_of_the_last_good_step_and_one_failed_message(o):
    run = o.runs["nan"]
    evs = _events(run)
    end = next(e for e in evs if e["type"] == "end")
    assert end["status"] == "failed" and "NaN" in end["error"]
    assert "learning_rate" in end["hint"] and "bf16" in end["hint"]
    assert [e["step"] for e in evs if e["type"] == "step"] == [1, 2]          # step 3 never stepped
    ckpt = rundir.last_checkpoint(run)
    assert ckpt is not None and ckpt.name == "checkpoint-2"                    # save_steps = 100: the guard saved it
    from safetensors.numpy import load_file
    weights = load_file(str(ckpt / "adapter_model.safetensors"))
    import numpy as np
    assert weights and all(np.isfinite(w).all() for w in weights.values())
    got = o.good.for_run(run.name)
    assert _titles(got) == [f"tunetop: {run.name} failed (NaN/inf loss)"]
    assert [h["TUNETOP_EVENT"] for h in o.hooks(run)] == ["failed"]


@pytest.mark.slow
def test_on_nan_warn_notifies_once_and_trains_on(o):
    run = o.runs["nan_warn"]
    evs = _events(run)
    warnings = [e for e in evs if e.get("code") == "nan_loss"]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning" and warnings[0]["step"] == 2
    assert rundir.read_state(run).status == "completed" and max(e["step"] for e in evs if e["type"] == "step") == 4
    assert _titles(o.good.for_run(run.name)) == [f"tunetop: {run.name} NaN/inf loss", f"tunetop: {run.name} completed"]
    assert [h["TUNETOP_EVENT"] for h in o.hooks(run)] == ["nan", "completed"]


@pytest.mark.slow
def test_stopped_and_failed_runs_send_one_message_each(o):
    stopped, failed = o.runs["stopped"], o.runs["failed"]
    assert rundir.read_state(stopped).status == "stopped"
    assert _titles(o.good.for_run(stopped.name)) == [f"tunetop: {stopped.name} stopped"]
    assert [h["TUNETOP_STATUS"] for h in o.hooks(stopped)] == ["stopped"]
    assert rundir.read_state(failed).status == "failed"
    got = o.good.for_run(failed.name)
    assert _titles(got) == [f"tunetop: {failed.name} failed"] and "Error:" in got[0]["message"]
    hook = o.hooks(failed)
    assert [h["TUNETOP_EVENT"] for h in hook] == ["failed"] and hook[0]["TUNETOP_ERROR"]


@pytest.mark.slow
def test_urls_are_never_written_into_the_run_directory(o):
    for run in o.runs.values():
        for name in ("run.toml", "events.jsonl", "engine.log"):
            text = (run / name).read_text(errors="replace")
            assert f"127.0.0.1:{o.good.port}" not in text and f"127.0.0.1:{o.hang.port}" not in text, (run, name)
    assert any("notifications to json://***, json://***, command" in e.get("message", "")
               for e in _events(o.runs["completed"]))


# -- rules and config (pure) ---------------------------------------------------------------------------

def test_eval_rising_notifies_once_after_n_rises_and_rearms_after_a_fall():
    rules = Rules("r1", eval_rising=2)
    seq = [2.0, 1.5, 1.6, 1.7, 1.8, 1.2, 1.3, 1.4]
    fired = [bool(rules.feed({"type": "eval", "step": i, "eval_loss": v})) for i, v in enumerate(seq)]
    assert fired == [False, False, False, True, False, False, False, True]


def test_first_backoff_is_remembered_across_a_relaunch():
    rules = Rules("r1")
    rules.prime([{"type": "backoff", "reason": "oom", "step": 2, "message": "m"}])
    assert rules.feed({"type": "backoff", "reason": "oom", "step": 5, "message": "m"}) is None
    fresh = Rules("r2")
    assert fresh.feed({"type": "backoff", "reason": "grow_back", "step": 5}) is None   # not an OOM
    assert fresh.feed({"type": "backoff", "reason": "oom", "step": 6, "message": "m"}).event == "backoff"


def _config(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_config_errors_name_the_file_and_field(tmp_path):
    cases = [
        ('[notify]\nurl = ["json://127.0.0.1:1/"]\n', 'notify.url: unknown key', 'did you mean "urls"?'),
        ('[notfy]\n', "notfy: unknown key", 'did you mean "[notify]"?'),
        ('[notify]\nurls = "x"\ntimeout_s = "5"\n', "notify.timeout_s: expected a number > 0", ""),
        ('[notify]\non = ["complete"]\n', 'unknown event "complete"', 'did you mean "completed"?'),
        ('[notify]\nurls = ["nosuchscheme://abc"]\n', "apprise does not understand this URL", "apprise/wiki"),
        ('[notify]\ncommand = ["tunetop-no-such-program"]\n', 'program "tunetop-no-such-program" not found', "PATH"),
        ('[notify\n', "not valid TOML", ""),
    ]
    for text, message, hint in cases:
        with pytest.raises(ConfigError) as info:
            userconfig.load(_config(tmp_path, text))
        assert str(tmp_path / "config.toml") in info.value.message and message in info.value.message, text
        assert hint in info.value.hint, text
    bad = _config(tmp_path, '[notify]\nurls = ["nosuchscheme://my-secret-token"]\n')
    with pytest.raises(ConfigError) as info:
        userconfig.load(bad)
    assert "my-secret-token" not in info.value.message + info.value.hint


def test_notify_command_checks_config_without_traceback(home, tmp_path):
    conf = tmp_path / "config" / "tunetop"
    conf.mkdir(parents=True)
    (conf / "config.toml").write_text('[notify]\nurls = ["nosuchscheme://abc"]\n')
    out = run_cli("notify", "--dry-run")
    assert out.returncode == 2 and "apprise does not understand this URL" in out.stderr
    assert "Traceback" not in out.stderr
    (conf / "config.toml").write_text('[notify]\nurls = ["ntfy://my-topic"]\non = ["failed"]\n')
    out = run_cli("notify", "--dry-run")
    assert out.returncode == 0 and "notifications to ntfy://*** on failed" in out.stdout
    assert "my-topic" not in out.stdout


def test_run_refuses_a_bad_config_before_starting_anything(home, tmp_path, make_profile):
    conf = tmp_path / "config" / "tunetop"
    conf.mkdir(parents=True)
    (conf / "config.toml").write_text('[notify]\ncommand = ["tunetop-no-such-hook"]\n')
    out = run_cli("run", "--detach", str(make_profile("x")))
    assert out.returncode == 2 and 'program "tunetop-no-such-hook" not found' in out.stderr
    assert "Traceback" not in out.stderr and not (home / "runs").exists()


def test_profile_notify_section_overrides_config_but_cannot_hold_urls(home, tmp_path, make_profile):
    conf = tmp_path / "config" / "tunetop"
    conf.mkdir(parents=True)
    (conf / "config.toml").write_text('[notify]\nurls = ["ntfy://t"]\neval_rising = 3\n')
    from engine import notify
    from engine.profile import load
    p = load(make_profile("n", {"notify": {"on": ["failed"], "eval_rising": 5}}))
    cfg = notify.settings(p)
    assert cfg.on == ["failed"] and cfg.eval_rising == 5 and cfg.urls == ["ntfy://t"]
    off = load(make_profile("off", {"notify": {"enabled": False}}))
    assert not notify.settings(off).active
    from engine.profile import ProfileError
    with pytest.raises(ProfileError) as info:
        load(make_profile("u", {"notify": {"urls": ["ntfy://t"]}}))
    assert "notify.urls: unknown key" in str(info.value)


def test_notify_command_sends_a_test_message_and_names_the_channel_that_failed(home, tmp_path):
    from .overnight_runs import Endpoint
    good = Endpoint()
    try:
        conf = tmp_path / "config" / "tunetop"
        conf.mkdir(parents=True)
        (conf / "config.toml").write_text(f'[notify]\nurls = ["{good.url("t")}", "json://127.0.0.1:1/"]\n'
                                          "timeout_s = 3\n")
        out = run_cli("notify")
        assert [m["title"] for m in good.received] == ["tunetop: test notification"]
        assert out.returncode == 2 and "sent to json://***" in out.stdout
        assert "1 channel(s) did not take the test message" in out.stderr and "127.0.0.1:1" not in out.stderr
    finally:
        good.close()
