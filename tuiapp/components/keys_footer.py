"""Textual's Footer, rebuilt only when the keys it shows change.

The stock Footer rebuilds itself (unmounts and mounts a widget per key) whenever the screen's bindings are
refreshed, which happens on every focus change, even when it would show the same keys. In the run builder,
where tab moves between ~50 fields on a screen of ~460 widgets, each rebuild cost four full layouts: 30 tabs
took 10.9 s of CPU on 2 cores (360 ms a key), 480 key widgets mounted. Here a focus change that leaves the
shown keys as they were leaves the footer alone.
"""
from __future__ import annotations

from textual.widgets import Footer


class KeysFooter(Footer):
    _shown: tuple | None = None

    def compose(self):
        # The stock footer draws no key until the screen's first bindings signal, then rebuilds: on the
        # dashboard that was a second layout before the first full frame. The keys are known at compose.
        self._bindings_ready = True
        self._shown = self._keys_shown(self.screen)
        return super().compose()

    def _keys_shown(self, screen) -> tuple:
        """Everything the footer draws from the bindings: which keys, their labels, whether enabled."""
        active = screen.active_bindings
        shown = tuple((b.key, b.key_display, b.action, b.description, b.group, enabled, tooltip)
                      for (_, b, enabled, tooltip) in active.values() if b.show)
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        return shown, (palette[1].key, palette[2]) if palette is not None else None

    def bindings_changed(self, screen) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = self._keys_shown(screen)
            if self._bindings_ready and shown == self._shown:
                return
            self._shown = shown
        super().bindings_changed(screen)
