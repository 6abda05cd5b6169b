"""The end of a run's engine.log, read incrementally (chunks from an offset, like the event tail)."""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path

KEEP_LINES = 400
FIRST_READ = 64 << 10     # on attach, only the last 64 KiB: the dashboard shows a tail, `l` the whole log


class LogTail:
    def __init__(self, path: Path, keep: int = KEEP_LINES):
        self.path = path
        self.lines: deque[str] = deque(maxlen=keep)
        self.partial = ""            # an unfinished last line (shown, and completed on the next read)
        self.offset: int | None = None
        self._ino: int | None = None

    def poll(self, max_bytes: int = 1 << 20) -> bool:
        """Read what was appended; True if anything changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if self.offset is None or st.st_size < self.offset or st.st_ino != self._ino:
            # First look, or the log was truncated/replaced: start from its last FIRST_READ bytes.
            self.lines.clear()
            self.partial = ""
            self.offset = max(0, st.st_size - FIRST_READ)
            skip_partial = self.offset > 0
            self._ino = st.st_ino
        else:
            skip_partial = False
        if st.st_size == self.offset:
            return skip_partial or False
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(max_bytes)
        except OSError:
            return False
        self.offset += len(data)
        text = self.partial + data.decode("utf-8", errors="replace").replace("\r\n", "\n")
        parts = text.split("\n")
        if skip_partial:
            parts = parts[1:]    # began mid-line
        self.partial = parts.pop() if parts else ""
        for line in parts:
            # A carriage return redraws a line in a terminal (progress bars): keep what it ends as.
            self.lines.append(line.rsplit("\r", 1)[-1].expandtabs(4))
        return True

    def tail(self, n: int) -> list[str]:
        out = list(self.lines)[-n:] if n > 0 else []
        if self.partial.strip():
            out = (out + [self.partial.rsplit("\r", 1)[-1]])[-n:]
        return out
