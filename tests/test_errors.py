"""One error type, two renderers: `error: MSG` + `  hint: HINT` in a terminal, MSG + `hint: HINT` in the dashboard."""
from __future__ import annotations

from engine.data import DataError
from engine.errors import TunetopError, render_text
from engine.profile import ProfileError
from engine.rundir import RunError
from tuiapp.errors_view import error_text


def test_every_user_facing_error_is_one_type_with_the_hint_kept_apart():
    for cls in (DataError, RunError):
        exc = cls("data.path: no such file", hint="check data.path")
        assert isinstance(exc, TunetopError)
        assert str(exc) == "data.path: no such file" and "hint" not in str(exc)
        assert render_text(exc) == "error: data.path: no such file\n  hint: check data.path"
        assert error_text(exc) == "data.path: no such file\nhint: check data.path"
    assert issubclass(ProfileError, TunetopError)


def test_renderers_without_a_hint_and_for_other_exceptions():
    assert render_text(TunetopError("run x is not running")) == "error: run x is not running"
    assert error_text(TunetopError("run x is not running")) == "run x is not running"
    assert error_text(OSError(28, "No space left on device")) == "[Errno 28] No space left on device"
    assert error_text(RuntimeError()) == "RuntimeError"
