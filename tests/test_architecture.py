"""The import boundaries, checked at run time (lint-imports checks the same ones statically, in .ci/run).

import-linter sees every import statement, lazy ones inside functions included, so the light modules that
need the training stack for one function are listed as exceptions in pyproject.toml. What matters to the
user is what happens when a module is imported: the dashboard must start without torch. This imports every
light engine module and every tuiapp module in a fresh interpreter and looks at sys.modules after each.
"""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import engine
import tuiapp

from .helpers import HEAVY, ROOT


def modules_of(package) -> list[str]:
    """Every module of a package, without the ones that run something when imported (__main__)."""
    names = [package.__name__]
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return sorted(names)


def light_engine_modules() -> list[str]:
    return [m for m in modules_of(engine) if m != "engine.train" and not m.startswith("engine.train.")]


PROBE = r"""
import importlib, json, sys
heavy, out = tuple(sys.argv[1].split(",")), {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    out[name] = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
print(json.dumps(out))
"""


def imported_after(modules: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """For each module, in order, the forbidden top-level packages in sys.modules once it is imported."""
    out = subprocess.run([sys.executable, "-c", PROBE, ",".join(forbidden), *modules], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_offender(found: dict[str, list[str]]) -> tuple[str, list[str]] | None:
    return next(((name, mods) for name, mods in found.items() if mods), None)


def test_light_engine_modules_import_neither_the_training_stack_nor_textual():
    modules = light_engine_modules()
    assert "engine.profile.validate" in modules and "engine.rundir" in modules
    found = imported_after(modules, HEAVY + ("textual",))
    assert set(found) == set(modules)
    offender = first_offender(found)
    assert offender is None, f"importing {offender[0]} pulled in {offender[1]}: import it inside the function that needs it"


def test_tuiapp_modules_never_import_the_training_stack():
    modules = modules_of(tuiapp)
    assert "tuiapp.app" in modules and "tuiapp.cli" in modules
    found = imported_after(modules, HEAVY)
    offender = first_offender(found)
    assert offender is None, f"importing {offender[0]} pulled in {offender[1]}: the dashboard must start without them"

