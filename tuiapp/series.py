"""A curve (loss, learning rate, grad norm, tokens seen) kept at a fixed resolution, whatever the run's length.

Points go into at most MAX_BINS bins of `width` steps each (sum, count, min, max). When a step falls
beyond the last bin, the width doubles and neighbouring bins merge, so memory stays constant, adding a
point is O(1), and drawing a chart of any width reads the bins, never the points. Bulk loads of sorted
steps are binned with slices (C speed) instead of a Python loop per point; with numpy installed (it comes
with the training stack; the dashboard does not need it) with numpy's reduceat, which is about ten times
faster again: a million points per curve in tens of milliseconds instead of about a second.
"""
from __future__ import annotations

import math
import sys
from bisect import bisect_left
from itertools import islice
from operator import le
from typing import Callable, Sequence

MAX_BINS = 1024

NUMPY_MIN = 4096     # points in one extend() from which numpy bins them, once it is imported
NUMPY_WORTH = 400_000  # points per curve above which importing numpy (~0.15 s, once) pays for itself


def load_numpy(points: int) -> None:
    """Import numpy for a bulk load of `points` per curve when that pays: pure-Python binning costs ~0.25 us
    a point, numpy's ~0.02, its import ~0.15 s (in the loading thread, never at start-up). Without numpy
    installed the pure-Python path does the same, slower."""
    if points >= NUMPY_WORTH and "numpy" not in sys.modules:
        try:
            import numpy  # noqa: F401
        except ImportError:
            pass


def _numpy():
    """numpy if something imported it (load_numpy, or the app), else None."""
    return sys.modules.get("numpy")


class Series:
    def __init__(self) -> None:
        self.width = 1
        self.sum: list[float] = []
        self.cnt: list[int] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.count = 0            # finite points taken
        self.nonfinite = 0        # NaN / inf values seen (not drawn; a diverged run says so)
        self.last_step: int | None = None
        self.last: float | None = None
        self.max_step = 0

    def copy(self) -> "Series":
        """A snapshot for the screen: at most MAX_BINS bins of four lists, so copying costs microseconds."""
        out = Series.__new__(Series)
        out.__dict__.update(self.__dict__)
        out.sum, out.cnt, out.lo, out.hi = self.sum[:], self.cnt[:], self.lo[:], self.hi[:]
        return out

    # The fields a saved copy holds (curve_cache.py): the bins and the counters, all plain numbers.
    FIELDS = ("width", "sum", "cnt", "lo", "hi", "count", "nonfinite", "last_step", "last", "max_step")

    def state(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_state(cls, state: dict) -> "Series":
        """A Series from state(); ValueError if the state is not one (a damaged cache is then ignored)."""
        out = cls()
        if set(state) != set(cls.FIELDS):
            raise ValueError("not a Series state")
        for k in cls.FIELDS:
            setattr(out, k, state[k])
        n = len(out.cnt)
        if not (isinstance(out.width, int) and out.width >= 1 and n <= MAX_BINS
                and len(out.sum) == len(out.lo) == len(out.hi) == n):
            raise ValueError("not a Series state")
        return out

    # -- adding ------------------------------------------------------------------------------------------

    def add(self, step: int, value: float) -> None:
        if step < 0:
            return
        if not math.isfinite(value):
            self.nonfinite += 1
            return
        self._fit(step)
        b = step // self.width
        self._grow(b)
        if self.cnt[b]:
            self.sum[b] += value
            self.cnt[b] += 1
            if value < self.lo[b]:
                self.lo[b] = value
            if value > self.hi[b]:
                self.hi[b] = value
        else:
            self.sum[b], self.cnt[b], self.lo[b], self.hi[b] = value, 1, value, value
        self.count += 1
        self.last_step, self.last = step, value
        if step > self.max_step:
            self.max_step = step

    def extend(self, steps: Sequence[int], values: Sequence[float]) -> None:
        """Add many points in file order. Sorted runs of steps are binned by slicing."""
        n = len(steps)
        if n < 64:
            for s, v in zip(steps, values):
                self.add(s, v)
            return
        np = _numpy() if n >= NUMPY_MIN else None
        if np is not None:
            self._extend_np(np, np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))
            return
        start = 0
        # A resume re-runs steps after its checkpoint, so a file holds sorted runs; bin each one.
        for cut in _descents(steps):
            self._extend_sorted(steps, values, start, cut)
            start = cut
        self._extend_sorted(steps, values, start, n)

    def _extend_np(self, np, steps, values) -> None:
        """extend() with numpy: each sorted run's bins reduced with reduceat (sum, min, max per bin)."""
        cuts = (np.flatnonzero(steps[1:] < steps[:-1]) + 1).tolist()
        for a, b in zip([0] + cuts, cuts + [len(steps)]):
            st, va = steps[a:b], values[a:b]
            if st[0] < 0 or b - a < 64:
                for s, v in zip(st.tolist(), va.tolist()):
                    self.add(s, v)
                continue
            self._fit(int(st[-1]))
            bins = st // self.width
            starts = np.concatenate(([0], np.flatnonzero(bins[1:] != bins[:-1]) + 1))
            sums = np.add.reduceat(va, starts)
            counts = np.diff(np.append(starts, len(va)))
            los, his = np.minimum.reduceat(va, starts), np.maximum.reduceat(va, starts)
            for i, bin_, total, n, lo, hi in zip(starts.tolist(), bins[starts].tolist(), sums.tolist(),
                                                   counts.tolist(), los.tolist(), his.tolist()):
                if math.isfinite(total):
                    self._merge(bin_, total, n, lo, hi)
                else:  # a NaN or inf somewhere in this bin: sort it out point by point
                    for s, v in zip(st[i:i + n].tolist(), va[i:i + n].tolist()):
                        self.add(s, v)
            if math.isfinite(va[-1]):
                self.last_step, self.last = int(st[-1]), float(va[-1])
            self.max_step = max(self.max_step, int(st[-1]))

    def _extend_sorted(self, steps, values, a: int, b: int) -> None:
        if b - a < 64:
            for i in range(a, b):
                self.add(steps[i], values[i])
            return
        if steps[a] < 0:
            for i in range(a, b):
                self.add(steps[i], values[i])
            return
        self._fit(steps[b - 1])
        w = self.width
        i = a
        while i < b:
            bin_ = steps[i] // w
            j = bisect_left(steps, (bin_ + 1) * w, i, b)
            chunk = values[i:j]
            total = sum(chunk)
            if math.isfinite(total):
                self._merge(bin_, total, j - i, min(chunk), max(chunk))
            else:  # a NaN or inf somewhere in this bin: sort it out point by point
                for k in range(i, j):
                    self.add(steps[k], values[k])
            i = j
        if math.isfinite(values[b - 1]):
            self.last_step, self.last = steps[b - 1], values[b - 1]
        self.max_step = max(self.max_step, steps[b - 1])

    def _merge(self, b: int, total: float, n: int, lo: float, hi: float) -> None:
        self._grow(b)
        if self.cnt[b]:
            self.sum[b] += total
            self.cnt[b] += n
            self.lo[b] = min(self.lo[b], lo)
            self.hi[b] = max(self.hi[b], hi)
        else:
            self.sum[b], self.cnt[b], self.lo[b], self.hi[b] = total, n, lo, hi
        self.count += n

    def _fit(self, step: int) -> None:
        while step // self.width >= MAX_BINS:
            self._coarsen()

    def _coarsen(self) -> None:
        """Double the bin width: bins 2k and 2k+1 become bin k."""
        s, c, lo, hi = [], [], [], []
        for k in range(0, len(self.cnt), 2):
            pair = [j for j in (k, k + 1) if j < len(self.cnt) and self.cnt[j]]
            s.append(sum(self.sum[j] for j in pair))
            c.append(sum(self.cnt[j] for j in pair))
            lo.append(min((self.lo[j] for j in pair), default=0.0))
            hi.append(max((self.hi[j] for j in pair), default=0.0))
        self.sum, self.cnt, self.lo, self.hi = s, c, lo, hi
        self.width *= 2

    def _grow(self, b: int) -> None:
        if b >= len(self.cnt):
            extra = b + 1 - len(self.cnt)
            self.sum += [0.0] * extra
            self.cnt += [0] * extra
            self.lo += [0.0] * extra
            self.hi += [0.0] * extra

    # -- reading -----------------------------------------------------------------------------------------

    def columns(self, n: int, x_max: float, x_min: float = 0,
                xmap: Callable[[int], float] | None = None) -> list[tuple[float, float, float] | None]:
        """Downsample to n x-positions over steps [x_min, x_max]: (mean, min, max) per position, None if empty.

        xmap: place each bin by another coordinate of its last step (the tokens seen at that step, see at());
        the window [x_min, x_max] is still given in steps and mapped the same way.
        """
        out: list[list[float] | None] = [None] * n
        if n <= 0 or x_max <= x_min:
            return []
        x0, x1 = (xmap(int(x_min)), xmap(int(x_max))) if xmap else (x_min, x_max)
        if x1 <= x0:
            return []
        scale = n / (x1 - x0)
        w = self.width
        for b, c in enumerate(self.cnt):
            if not c:
                continue
            last = min((b + 1) * w - 1, self.max_step)
            if last < x_min:
                continue
            # The bin's last step decides its column, so step N lands at the right edge.
            pos = xmap(last) if xmap else last
            x = min(n - 1, max(0, int(math.ceil((pos - x0) * scale)) - 1))
            cell = out[x]
            if cell is None:
                out[x] = [self.sum[b], c, self.lo[b], self.hi[b]]
            else:
                cell[0] += self.sum[b]
                cell[1] += c
                cell[2] = min(cell[2], self.lo[b])
                cell[3] = max(cell[3], self.hi[b])
        return [(c[0] / c[1], c[2], c[3]) if c else None for c in out]

    def at(self, step: int) -> float:
        """The value at a step, read from the bins: exact while a bin is one step wide (runs up to MAX_BINS
        steps), else interpolated inside the step's bin (a rising count such as tokens seen is off by less
        than one bin, 1/MAX_BINS of the run: finer than any chart's column). 0.0 before the first point."""
        w, cnt = self.width, self.cnt
        b = min(max(0, step // w), len(cnt) - 1)
        while b >= 0 and not cnt[b]:      # an empty bin (a gap in the steps): the nearest bin below
            b -= 1
        if b < 0:
            return 0.0
        first, last = b * w, min((b + 1) * w - 1, self.max_step)
        if step >= last or last <= first:
            return self.hi[b]
        return self.lo[b] + (self.hi[b] - self.lo[b]) * max(0, step - first) / (last - first)

    def bounds(self) -> tuple[float, float] | None:
        vals = [(lo, hi) for lo, hi, c in zip(self.lo, self.hi, self.cnt) if c]
        if not vals:
            return None
        return min(v[0] for v in vals), max(v[1] for v in vals)


def _descents(steps: Sequence[int]) -> list[int]:
    """Indices i where steps[i] < steps[i-1] (the start of each new sorted run)."""
    if all(map(le, steps, islice(steps, 1, None))):
        return []
    return [i for i in range(1, len(steps)) if steps[i] < steps[i - 1]]
