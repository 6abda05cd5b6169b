"""Graceful stop on SIGTERM/SIGINT (light: installed before torch is imported)."""
from __future__ import annotations

import signal


class StopRequest:
    """Set by SIGTERM/SIGINT; the training loop checks it after each optimizer step.

    A second signal while the checkpoint is being written is ignored on purpose: the user asked for a
    clean stop, and half a checkpoint is worse than waiting a few seconds.
    """

    def __init__(self):
        self.requested = False
        self.signal_name = ""

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        # Detached engines have no terminal, but be explicit: a hang-up must never stop training.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
