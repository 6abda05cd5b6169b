"""History: `tunetop ls` filters, sorts and shows disk use; `prune` and `rm` free space after asking."""
from __future__ import annotations

import shutil

import pytest

from engine import rundir



def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


@pytest.mark.slow
def test_ls_filters_sorts_and_shows_disk_use(o):
    every = o.cli("ls")
    assert every.returncode == 0 and "DISK" in every.stdout.splitlines()[0]
    assert len(_ids(every.stdout)) == len(o.runs) and "KiB" in every.stdout
    done = o.cli("ls", "--status", "completed")
    assert sorted(_ids(done.stdout)) == sorted([o.runs["completed"].name, o.runs["nan_warn"].name])
    failed = o.cli("ls", "--status", "failed,stopped")
    assert sorted(_ids(failed.stdout)) == sorted(o.runs[n].name for n in ("nan", "stopped", "failed"))
    assert _ids(o.cli("ls", "--profile", "nan_*").stdout) == [o.runs["nan_warn"].name]
    assert len(_ids(o.cli("ls", "--since", "2h").stdout)) == len(o.runs)
    assert "no run matches" in o.cli("ls", "--since", "2099-01-01").stdout
    by_disk = _ids(o.cli("ls", "--sort", "disk").stdout)
    assert by_disk[0] == o.runs["completed"].name     # three checkpoints and the adapter
    bad = o.cli("ls", "--status", "complete")
    assert bad.returncode == 2 and 'did you mean "completed"?' in bad.stderr
    assert o.cli("ls", "--since", "yesterday").returncode == 2
    assert 'did you mean "loss"?' in o.cli("ls", "--sort", "los").stderr


@pytest.fixture
def copies(o, tmp_path):
    """Copies of the finished runs in a private home: prune and rm change them."""
    runs = tmp_path / "home" / "runs"
    for run in o.runs.values():
        shutil.copytree(run, runs / run.name, ignore=shutil.ignore_patterns("engine.lock"))
    return {**o.env, "TUNETOP_HOME": str(tmp_path / "home")}, runs


@pytest.mark.slow
def test_prune_keeps_only_the_last_complete_checkpoint_after_asking(o, copies):
    env, runs = copies
    run = runs / o.runs["completed"].name
    def ckpts():
        return sorted((p.name for p in (run / "checkpoints").iterdir() if p.is_dir()), key=lambda n: int(n.split("-")[1]))
    assert ckpts() == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]             # save_total_limit = 3
    asked = _cli(o, env, "prune", run.name)
    assert asked.returncode == 2 and "add --yes" in asked.stderr
    assert len(ckpts()) == 3          # nothing deleted without an answer
    done = _cli(o, env, "prune", run.name, "--yes")
    assert done.returncode == 0 and "kept checkpoint-8" in done.stdout, done.stderr
    assert ckpts() == ["checkpoint-8"]
    assert rundir.last_checkpoint(run).name == "checkpoint-8"
    again = _cli(o, env, "prune", run.name, "--yes")
    assert "nothing to prune" in again.stdout
    none = _cli(o, env, "prune", o.runs["failed"].name, "--yes")
    assert none.returncode == 2 and "no complete checkpoint" in none.stderr


@pytest.mark.slow
def test_rm_deletes_a_finished_run_after_asking(o, copies):
    env, runs = copies
    name = o.runs["stopped"].name
    asked = _cli(o, env, "rm", name)
    assert asked.returncode == 2 and "add --yes" in asked.stderr and (runs / name).exists()
    done = _cli(o, env, "rm", name, "--yes")
    assert done.returncode == 0 and not (runs / name).exists()
    assert name not in _cli(o, env, "ls").stdout
    assert _cli(o, env, "rm", "no-such-run", "--yes").returncode == 2


def _cli(o, env, *args):
    from .helpers import run_cli
    return run_cli(*args, env=env)


@pytest.mark.slow
def test_the_dashboard_prunes_with_p_after_asking_with_cancel_preselected(o, copies):
    from engine.telemetry import ScriptedSource
    from tuiapp.app import TunetopApp
    from tuiapp.components.confirm import ConfirmScreen

    from .helpers import await_until
    from .tui_helpers import drive, wait_text
    env, runs = copies
    run = runs / o.runs["completed"].name
    app = TunetopApp(gpu_source=ScriptedSource.no_gpu(), runs_root=runs)
    said: list[str] = []
    app.notify = lambda message, **kw: said.append(str(message))   # the toasts, as text

    def ckpts():
        return sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())

    async def scenario(pilot):
        await wait_text(pilot, "runs (5)")
        app.query_one("#table").select_run(run.name)
        await wait_text(pilot, f"run {run.name}")
        await pilot.press("p")
        assert isinstance(app.screen, ConfirmScreen)
        await wait_text(pilot, "Delete 2 checkpoint(s) (checkpoint-4, checkpoint-6", "keeping checkpoint-8")
        await pilot.press("enter")                  # Cancel is the default: nothing goes
        assert await await_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), 5)
        await pilot.pause(0.3)
        assert len(ckpts()) == 3
        await pilot.press("p", "y")
        assert await await_until(pilot, lambda: ckpts() == ["checkpoint-8"], 10)
        assert await await_until(pilot, lambda: any("freed" in s and "kept checkpoint-8" in s for s in said), 10)
        await pilot.press("p")                      # again: only the last one is left, nothing is asked
        assert await await_until(pilot, lambda: any("nothing to prune" in s for s in said), 5)
        assert not isinstance(app.screen, ConfirmScreen)
    drive(app, (120, 40), scenario)
    assert rundir.last_checkpoint(run).name == "checkpoint-8"
