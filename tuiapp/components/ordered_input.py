"""Widgets that apply keys in the order they were typed, however fast they come (keys over SSH, a paste of
key presses, a slow frame).

Why: Textual 8 forwards each key from the App to the focused Input's queue. The Input inserts printable
characters there and then, but a bound key (backspace, end, left, ctrl+u, tab ...) bubbles back to the App,
whose queue already holds the keys typed after it, and only then runs its action. Under a burst, `End,
5 x Backspace, x y z` on "v1.23" became "v1." (the letters went in before the backspaces ran): Textual issue
#6605, fix proposed in Textual PR #6631 (run the widget's bindings inline). The builder makes it likely,
since every keystroke re-validates the field and the queue fills meanwhile.

Here every key is handled in the Input's own queue, in order: a bound key runs its action at once, by the
same lookup the App would do a moment later (focused widget, its ancestors, the screen, the app; priority
bindings were already checked by the App before the key got here). A key that reaches this Input after an
earlier one moved the focus away (tab, enter, a dialog) goes on to where the focus now is, so a burst that
tabs from a checkbox or a list into a text field lands its letters there. The builder's editors all use it.
"""
from __future__ import annotations

from textual import events
from textual.widgets import Input


class KeysInOrder:
    """Mixin for a focusable widget: its keys are handled in its own queue, in arrival order."""

    async def _on_key(self, event: events.Key) -> None:
        app = self.app
        target = app.focused or app.screen
        if target is not self and self not in target.ancestors:
            # Forwarded here before an earlier key moved the focus: deliver it where the user now is.
            event.stop()
            event.prevent_default()
            again = events.Key(event.key, event.character)
            again._set_forwarded()
            target.post_message(again)
            return
        if not self.check_consume_key(event.key, event.character):
            # Textual's own lookup (App._check_bindings, non-priority: from the focused widget up), run now
            # instead of after the round trip through the App's queue.
            if await app._check_bindings(event.key):
                event.stop()
                event.prevent_default()
                return
        await super()._on_key(event)


class OrderedInput(KeysInOrder, Input):
    """An Input whose editing keys and typed characters apply in the order they were typed."""
