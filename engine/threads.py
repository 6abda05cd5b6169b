"""How the engine's OpenMP threads wait for work: chosen once at launch, before the engine imports torch.

OpenMP's wait policy is read when the runtime starts and cannot change afterwards, so the launcher decides
it and passes it in the engine's environment (torchrun hands it on to every rank).

Measured with tests/bench/bench_engine_speed.py on the 2-core machine the suite is sized for (the demo-
shaped model, hidden 256, micro-batch 8 x 2, seq 256; the engine and a plain TRL script under the same
policy, same rows in the same order, alternating rounds; "hog" is a busy loop started before the run;
steps/s of the engine, plain TRL's beside it):

    policy                          LoRA quiet     LoRA hog       QLoRA quiet    QLoRA hog
    library default (spin 300k)     3.47 / 3.39    0.09 / 0.97    1.15 / 1.09    see the note
    OMP_WAIT_POLICY=PASSIVE         2.13 / 2.01    2.00 / 2.02    1.13 / 1.12    see the note
    GOMP_SPINCOUNT=10000 (short)    3.27 / 3.01    0.74 / 0.71    1.16 / 1.27    see the note

- Spinning threads are fastest on a quiet CPU and collapse beside a busy process: 0.09 steps/s, 38x
  slower, for the detached engine, which runs in its own session and so (with the kernel's autogroup
  scheduling, on by default) in its own CPU share: its two spinning threads waited on each other while
  the other held the core.
- Passive threads sleep at once: robust (the hog costs them 6%), but 39% slower on a quiet CPU for LoRA.
- A short spin (10,000 turns of libgomp's loop, the default is 300,000) keeps 94% of the quiet speed and,
  when load arrives after launch, degrades to 0.74 steps/s instead of collapsing.
- QLoRA on CPU (bitsandbytes dequantising each layer) does not care: within 5% whatever the policy.

So `auto` (the default): a CPU already busy at launch gets passive waits; an idle one gets the short spin
(near the library's speed, and no collapse if another run or a compile starts later). On a GPU machine the
CPU does little (collation, the odd small op): an idle rig gets the short spin, a busy one passive waits,
neither of which costs GPU throughput. GOMP_SPINCOUNT is libgomp's (PyTorch's Linux builds); elsewhere the
short spin is the library default.

Overrides, in order: OMP_WAIT_POLICY (and GOMP_SPINCOUNT) in the environment are always kept;
TUNETOP_THREAD_POLICY=spin, passive or default forces one; `auto` (or unset) decides as above.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

POLICY_ENV = "TUNETOP_THREAD_POLICY"
POLICIES = ("auto", "spin", "passive", "default")
SHORT_SPIN = "10000"     # GOMP_SPINCOUNT for "spin" (see the table above)


@dataclass(frozen=True)
class ThreadChoice:
    env: dict[str, str]    # variables to set in the engine's environment (empty: leave the default)
    reason: str            # one line for engine.log: what was chosen and why


def busy_cpus(samples: int = 10, interval_s: float = 0.02) -> float:
    """CPUs kept busy by other work right now: the fewest runnable threads in a few readings of
    /proc/stat's procs_running over 0.2 s, not counting the one asking. The fewest, because a process that
    holds a core is runnable in every reading, while a blip (a process starting or exiting, a kernel
    thread) is not: the mean turned a quiet machine "busy" in one launch of four. The 1-minute load
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
        return float(max(0, min(readings)))
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
    choice = _choose(env, processes, cpus, busy)
    if env.get("GOMP_SPINCOUNT"):   # libgomp's spin length, also the user's to set: said, never changed
        return ThreadChoice(choice.env, f"{choice.reason}; GOMP_SPINCOUNT={env['GOMP_SPINCOUNT']}")
    return choice


def _choose(env: dict[str, str], processes: int, cpus: int | None, busy: float | None) -> ThreadChoice:
    if env.get("OMP_WAIT_POLICY"):
        return ThreadChoice({}, f"threads: OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']} (set in the environment)")
    asked = (env.get(POLICY_ENV) or "auto").strip().lower()
    note = ""
    if asked not in POLICIES:   # never fatal: the run starts as under auto, and the log says why
        note = f"; {POLICY_ENV}={env[POLICY_ENV]!r} is not one of {', '.join(POLICIES)}: auto used"
        asked = "auto"
    spin = {} if env.get("GOMP_SPINCOUNT") else {"GOMP_SPINCOUNT": SHORT_SPIN}
    if asked == "passive":
        return ThreadChoice({"OMP_WAIT_POLICY": "PASSIVE"}, f"threads: passive waits ({POLICY_ENV}=passive)")
    if asked == "default":
        return ThreadChoice({}, f"threads: the OpenMP default ({POLICY_ENV}=default)")
    if asked == "spin":
        return ThreadChoice(spin, f"threads: short spins ({POLICY_ENV}=spin)")
    cpus = cpus or usable_cpus()
    busy = busy_cpus() if busy is None else busy
    threads = wanted_threads(env, processes, cpus)
    if busy + threads > cpus + 0.5:
        return ThreadChoice({"OMP_WAIT_POLICY": "PASSIVE"},
                            f"threads: passive waits ({busy:.0f} of {cpus} CPUs busy at launch, {threads} threads "
                            f"wanted: spinning threads would starve each other; {POLICY_ENV}=spin overrides){note}")
    return ThreadChoice(spin, f"threads: short spins ({busy:.0f} of {cpus} CPUs busy at launch: room for {threads} "
                              f"threads; spinning briefly keeps the library's speed and cannot collapse if load "
                              f"comes later; {POLICY_ENV}=passive overrides){note}")
