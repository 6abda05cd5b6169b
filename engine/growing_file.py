"""Follow a file that another process appends to: the one reader behind every tail in tunetop.

events.EventTail (`tunetop watch`, `run`), the dashboard's event follower and log tail, and the full-screen log
viewer all read runs/<id>/events.jsonl or engine.log this way:

- from a saved byte offset, in chunks of at most `max_bytes` (a reader never loads a whole 1 GB log);
- whole lines only: the offset always sits at a line start, and an unfinished last line (a write in progress,
  or a torn write) is handed back as `partial` without being consumed, so it is read again once complete;
- truncation (the file got shorter than the offset) and rotation or replacement (another inode at the path)
  start over, and say so (`reset`), so the caller can drop what it showed;
- optionally open at the last `tail_bytes` of the file (a log's tail), skipping the cut first line.

No dependencies beyond the standard library: engine's light modules and the dashboard both use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Chunk:
    lines: list[bytes] = field(default_factory=list)   # complete lines, without their b"\n"
    partial: bytes = b""     # the unterminated end of the file as it is now (not consumed)
    reset: bool = False      # truncated, rotated or replaced since the last read: this chunk starts over
    skipped: int = 0         # bytes left out at the start (opened at the tail)


class GrowingFile:
    def __init__(self, path: str | Path, tail_bytes: int | None = None):
        """tail_bytes: None reads from the start; N starts at the last N bytes (and again after a reset)."""
        self.path = Path(path)
        self.tail_bytes = tail_bytes
        self._offset: int | None = None     # None: not opened yet
        self._ino: int | None = None
        self._skip_cut_line = False         # opened mid-file: drop bytes up to the first line start
        self.size = 0                       # the file's size at the last look

    @property
    def offset(self) -> int:
        """Bytes consumed: the start of the first line not yet returned."""
        return self._offset or 0

    @offset.setter
    def offset(self, value: int) -> None:
        """Continue from a known line start (a fast scan read up to here)."""
        self._offset = value
        self._skip_cut_line = False
        if self._ino is None:
            try:
                self._ino = os.stat(self.path).st_ino
            except OSError:
                pass

    def pending(self) -> int | None:
        """Bytes appended since the last read, or None when the next read starts over (or no file)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if self._offset is None or self._changed(st):
            return None
        return st.st_size - self._offset

    def _changed(self, st: os.stat_result) -> bool:
        return (self._ino is not None and st.st_ino != self._ino) or st.st_size < (self._offset or 0)

    def read(self, max_bytes: int = 1 << 20) -> Chunk | None:
        """What was appended since the last read; None when nothing changed (or the file is missing)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        chunk = Chunk()
        if self._offset is None or self._changed(st):
            chunk.reset = self._offset is not None
            start = 0 if self.tail_bytes is None else max(0, st.st_size - self.tail_bytes)
            chunk.skipped = start
            self._offset = start
            self._skip_cut_line = start > 0
        self._ino = st.st_ino
        self.size = st.st_size
        if st.st_size == self._offset:
            return chunk if chunk.reset else None
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(max_bytes)
        except OSError:
            return chunk if chunk.reset else None
        if self._skip_cut_line:
            # Opened mid-file: the first piece is the end of a line that began before the tail.
            cut = data.find(b"\n") + 1
            if cut == 0 and len(data) < max_bytes:
                return chunk if chunk.reset else None
            self._offset += cut
            self._skip_cut_line = False
            data = data[cut:]
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) >= max_bytes:
            end = len(data)        # one line longer than a whole read: hand it over rather than stall
            chunk.lines = [data]
        else:
            chunk.lines = data[:end].split(b"\n")[:-1]
        chunk.partial = data[end:]
        self._offset += end
        return chunk
