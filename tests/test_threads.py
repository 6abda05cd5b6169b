"""The engine's OpenMP wait policy (engine/threads.py): chosen at launch from how busy the CPU is."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from engine import threads


def test_an_idle_cpu_keeps_the_library_default_and_a_busy_one_gets_passive_waits():
    quiet = threads.choose({}, cpus=2, busy=0.0)
    assert quiet.env == {"GOMP_SPINCOUNT": "10000"} and "short spins" in quiet.reason \
        and "0 of 2 CPUs busy" in quiet.reason
    busy = threads.choose({}, cpus=2, busy=1.0)
    assert busy.env == {"OMP_WAIT_POLICY": "PASSIVE"} and "1 of 2 CPUs busy" in busy.reason
    # One thread per core already: one busy core oversubscribes them; eight threads on sixteen have room.
    assert threads.choose({"OMP_NUM_THREADS": "16"}, cpus=16, busy=1.0).env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert threads.choose({"OMP_NUM_THREADS": "8"}, cpus=16, busy=1.0).env == {"GOMP_SPINCOUNT": "10000"}


def test_several_processes_count_their_threads_together():
    # torchrun's ranks run one thread each unless OMP_NUM_THREADS says otherwise.
    assert threads.wanted_threads({}, processes=4, cpus=16) == 4
    assert threads.wanted_threads({"OMP_NUM_THREADS": "4"}, processes=4, cpus=16) == 16
    assert threads.wanted_threads({}, processes=1, cpus=16) == threads.physical_cores(16) <= 16
    assert threads.choose({"OMP_NUM_THREADS": "4"}, processes=4, cpus=16, busy=2.0).env == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert "OMP_WAIT_POLICY" not in threads.choose({"OMP_NUM_THREADS": "3"}, processes=4, cpus=16, busy=2.0).env


@pytest.mark.parametrize("env,expected,says", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {}, "OMP_WAIT_POLICY=ACTIVE (set in the environment)"),
    ({"TUNETOP_THREAD_POLICY": "passive"}, {"OMP_WAIT_POLICY": "PASSIVE"}, "TUNETOP_THREAD_POLICY=passive"),
    ({"TUNETOP_THREAD_POLICY": "default"}, {}, "TUNETOP_THREAD_POLICY=default"),
    ({"TUNETOP_THREAD_POLICY": "spin"}, {"GOMP_SPINCOUNT": "10000"}, "TUNETOP_THREAD_POLICY=spin"),
    ({"TUNETOP_THREAD_POLICY": "spin", "GOMP_SPINCOUNT": "500"}, {}, "short spins (TUNETOP_THREAD_POLICY=spin); GOMP_SPINCOUNT=500"),
    ({"TUNETOP_THREAD_POLICY": "fast"}, {"GOMP_SPINCOUNT": "10000"},
     "TUNETOP_THREAD_POLICY='fast' is not one of auto, spin, passive, default"),
])
def test_the_environment_overrides_and_a_bad_value_is_said_not_fatal(env, expected, says):
    choice = threads.choose(env, cpus=2, busy=0.0)
    assert choice.env == expected and says in choice.reason


def test_a_busy_loop_beside_us_is_counted():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads.busy_cpus() >= 0.9
    finally:
        hog.kill()
        hog.wait()
