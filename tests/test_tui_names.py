"""The dashboard's own methods never shadow Textual's internals.

A mixin method named `_prune` once replaced Textual's `App._prune`, and quitting the dashboard hung
forever. Every private name tunetop's App and its mixins define is checked against Textual's App classes."""
from __future__ import annotations

from textual.app import App

from tuiapp.app import TunetopApp

# Class attributes Textual itself generates on every App subclass (bindings, CSS and reactive bookkeeping).
GENERATED = {"_computes", "_css_type_name", "_css_type_names", "_decorated_handlers", "_inherit_bindings",
             "_inherit_component_classes", "_inherit_css", "_merged_bindings", "_reactives"}


def test_no_private_name_of_ours_shadows_textual():
    textual = {name for cls in App.__mro__ for name in vars(cls)}
    ours = {name for cls in TunetopApp.__mro__ if cls.__module__.startswith("tuiapp")
            for name in vars(cls) if name.startswith("_") and not name.startswith("__")}
    assert ours & textual - GENERATED == set(), "rename these: Textual's App defines them too"
