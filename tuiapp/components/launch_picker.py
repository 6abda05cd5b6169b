"""Pick a profile and launch it as it is (L): bundled and saved profiles, with their descriptions."""
from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


def describe(path: Path) -> str:
    from engine.profile import ProfileError, load_named
    try:
        return load_named(str(path)).description or ""
    except ProfileError:
        return "invalid: `tunetop validate` says why"
    except Exception as exc:   # an unreadable file must not close the picker
        return f"unreadable: {exc}"


class LaunchPicker(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Cancel", show=True)]
    DEFAULT_CSS = """
    LaunchPicker { align: center middle; }
    LaunchPicker > Vertical { width: 90; max-width: 100%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; }
    LaunchPicker OptionList { height: auto; max-height: 20; border: none; }
    LaunchPicker #hint { color: $text-muted; padding: 0 1; }
    """

    def __init__(self, profiles: list[Path]):
        super().__init__()
        self.profiles = profiles

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "launch a profile"
            if not self.profiles:
                yield Static("no profiles found (bundled profiles/ or ~/.config/tunetop/profiles)", id="hint")
            yield OptionList(*[Option(Content.assemble((p.stem, "bold"), "  ", (describe(p), "$text-muted")),
                                      id=str(i)) for i, p in enumerate(self.profiles)])
            yield Static("enter launches a detached run · escape cancels", id="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.profiles[int(event.option.id)])
