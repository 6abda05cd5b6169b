"""How the engine's OpenMP threads wait for work: chosen once at launch, before the engine imports torch.

OpenMP's wait policy is read when the runtime starts and cannot change afterwards, so the launcher decides
it and passes it in the engine's environment (torchrun hands it on to every rank).

- Threads that spin while they wait (the library default) are fastest when the process has the cores to
  itself, and collapse when another busy process shares them: a spinning thread holds its core while the
  thread it waits for sits descheduled behind the other process.
- Passive threads (OMP_WAIT_POLICY=PASSIVE) sleep at once: robust on a shared CPU, slower on a quiet one,
  where every parallel region pays a wake-up.

So `auto` (the default) keeps the library default, what plain PyTorch and TRL do, when the CPU has room
for the engine's threads at launch, and chooses passive waits when it is already oversubscribed. The
figures behind that rule are measured by tests/bench/bench_engine_speed.py (see the comment below).

On a GPU machine the CPU does little (collation, the odd small op), so an idle rig gets the library
default, exactly as a plain TRL script would: the choice cannot cost GPU throughput; a rig busy with other
work at launch gets passive waits, which leave its cores to that work.

Overrides, in order: OMP_WAIT_POLICY in the environment is always kept; TUNETOP_THREAD_POLICY=passive or
default forces one; `auto` (or unset) decides as above.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

POLICY_ENV = "TUNETOP_THREAD_POLICY"
POLICIES = ("auto", "passive", "default")

# Why (issue 15's measurements on the 2-core machine the suite is sized for, LoRA on the demo model): the
# engine under PASSIVE ran 0.47x plain TRL under the default on a quiet CPU (QLoRA 0.54x); with the same
# policy on both sides the ratio was 1.07 (passive) and 0.91 (default); with another process holding a
# core, spinning threads fell to 1-3 steps/s while passive ones kept 5-12.


@dataclass(frozen=True)
class ThreadChoice:
    env: dict[str, str]    # variables to set in the engine's environment (empty: leave the default)
    reason: str            # one line for engine.log: what was chosen and why


def busy_cpus(samples: int = 5, interval_s: float = 0.02) -> float:
    """Runnable threads on the machine right now, not counting the one asking (the mean of a few
    readings of /proc/stat's procs_running, which moves faster than the load average); the 1-minute load
    average where /proc is missing."""
    readings = []
    for i in range(samples):
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"procs_running"):
                        readings.append(int(line.split()[1]) - 1)
                        break
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(interval_s)
    if readings:
        return max(0.0, sum(readings) / len(readings))
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores(cpus: int) -> int:
    """torch's default thread count: one per physical core (of those this process may use)."""
    try:
        import psutil
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    return max(1, min(cpus, physical or cpus))


def wanted_threads(env: dict[str, str], processes: int, cpus: int) -> int:
    """OpenMP threads the engine's processes on this machine will run together: OMP_NUM_THREADS each where
    it is set, one each under torchrun otherwise (torchrun's own default), else torch's one per physical
    core."""
    try:
        each = int(env.get("OMP_NUM_THREADS", ""))
    except ValueError:
        each = 0
    if each > 0:
        return each * max(1, processes)
    return processes if processes > 1 else physical_cores(cpus)


def choose(env: dict[str, str], processes: int = 1, cpus: int | None = None,
           busy: float | None = None) -> ThreadChoice:
    """The wait policy for `processes` engine processes on this machine started with `env`."""
    if env.get("OMP_WAIT_POLICY"):
        return ThreadChoice({}, f"threads: OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']} (set in the environment)")
    asked = (env.get(POLICY_ENV) or "auto").strip().lower()
    note = ""
    if asked not in POLICIES:   # never fatal: the run starts as under auto, and the log says why
        note = f"; {POLICY_ENV}={env[POLICY_ENV]!r} is not one of {', '.join(POLICIES)}: auto used"
        asked = "auto"
    if asked == "passive":
        return ThreadChoice({"OMP_WAIT_POLICY": "PASSIVE"}, f"threads: passive waits ({POLICY_ENV}=passive)")
    if asked == "default":
        return ThreadChoice({}, f"threads: the OpenMP default ({POLICY_ENV}=default)")
    cpus = cpus or usable_cpus()
    busy = busy_cpus() if busy is None else busy
    threads = wanted_threads(env, processes, cpus)
    if busy + threads > cpus + 0.5:
        return ThreadChoice({"OMP_WAIT_POLICY": "PASSIVE"},
                            f"threads: passive waits ({busy:.1f} of {cpus} CPUs busy at launch, {threads} threads "
                            f"wanted: spinning threads would starve each other; {POLICY_ENV}=default overrides){note}")
    return ThreadChoice({}, f"threads: the OpenMP default ({busy:.1f} of {cpus} CPUs busy at launch: room for "
                            f"{threads} threads; {POLICY_ENV}=passive overrides){note}")
