"""One source for key help: tuiapp/keys.py's bindings are the screens' BINDINGS, the help screens' rows and
README's key tables."""
from __future__ import annotations

import re

from tuiapp import keys
from tuiapp.app import TunetopApp
from tuiapp.builder import RunBuilderScreen
from tuiapp.components.runs_table import RunsTable

from .tui_helpers import ROOT


def readme_table(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    m = re.search(r"^\| key \| action \|\n(?:^\|.*\|\n)+", section, re.M)
    assert m, f"no key table under {heading!r} in README.md"
    return m.group(0).rstrip("\n")


def test_readme_key_tables_are_the_bindings():
    rows = keys.dashboard_rows(TunetopApp.BINDINGS)
    assert readme_table("## The dashboard") == keys.markdown_table(rows), \
        "README's dashboard keys differ from the bindings; paste keys.markdown_table(keys.dashboard_rows(...))"
    assert readme_table("### The run builder") == keys.markdown_table(keys.builder_rows()), \
        "README's builder keys differ from tuiapp/keys.py; paste keys.markdown_table(keys.builder_rows())"


def test_screens_bind_what_the_help_lists():
    assert all(b in TunetopApp.BINDINGS for b in keys.DASHBOARD)
    assert RunsTable.BINDINGS is keys.RUNS_TABLE
    assert RunBuilderScreen.BINDINGS is keys.BUILDER
    for owner, bindings in ((TunetopApp, TunetopApp.BINDINGS), (RunBuilderScreen, keys.BUILDER)):
        for b in bindings:
            assert b.tooltip, f"{b.key} has no help text: the help screen and README would miss it"
            assert hasattr(owner, f"action_{b.action}"), b.action
    assert any(row[0] == "ctrl+s / f2" for row in keys.builder_rows())
