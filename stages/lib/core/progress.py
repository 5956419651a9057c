"""Progress of the loops that take minutes (download, extract, crop, features, training), on stderr.

    with progress(len(paths), "features", "img") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

`show` picks what is shown:
- None (the stages' default): a tqdm bar when stderr is a terminal; otherwise (under `dvc repro` in
  CI, or with output sent to a log file) one line every INTERVAL seconds with the count, the rate
  and the time left, e.g. `features: 2,048/8,000 img (25.6%), 3.1 img/s, ETA 32m 0s`, and a last
  line with the total time. A loop done before the first interval prints nothing, so quick steps
  stay quiet.
- True: the bar, even off a terminal. False: nothing (the stages' `--no-progress`).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm import tqdm

INTERVAL = 30.0  # seconds between two progress lines off a terminal


def progress(
    total: int | None, desc: str, unit: str = "it", *, show: bool | None = None, initial: int = 0,
    at_most: bool = False, interval: float = INTERVAL,
) -> "Progress":
    """A progress display for `total` units of work (None: unknown), `initial` of them already done.

    unit "B" counts bytes (shown as KiB, MiB, GiB). `at_most`: the total is an upper bound (training
    epochs under early stopping), so the time left is one too.
    """
    if show is False:
        return Progress(total, desc, unit, initial=initial)
    if show or _is_terminal(sys.stderr):
        return BarProgress(total, desc, unit, initial=initial)
    return LineProgress(total, desc, unit, initial=initial, at_most=at_most, interval=interval)


class Progress:
    """Shows nothing: the base of the bar and the lines, and what `show=False` gives."""

    def __init__(self, total: int | None, desc: str, unit: str, *, initial: int = 0):
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial

    def update(self, n: int = 1) -> None:
        self.done += n

    def note(self, text: str) -> None:
        """A short status shown after the count (e.g. the last epoch's val_loss)."""

    def write(self, text: str) -> None:
        """A message that does not break the bar."""
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BarProgress(Progress):
    def __init__(self, total: int | None, desc: str, unit: str, *, initial: int = 0):
        super().__init__(total, desc, unit, initial=initial)
        in_bytes = unit == "B"
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=in_bytes,
                         unit_divisor=1024 if in_bytes else 1000, file=sys.stderr, disable=False)

    def update(self, n: int = 1) -> None:
        super().update(n)
        self._bar.update(n)

    def note(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


class LineProgress(Progress):
    """One line every `interval` seconds; the rate is the average since the start of this run."""

    def __init__(self, total: int | None, desc: str, unit: str, *, initial: int = 0, at_most: bool = False,
                 interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None):
        super().__init__(total, desc, unit, initial=initial)
        self.at_most, self.interval, self.clock = at_most, interval, clock
        self.stream = stream
        self.started = self.last = clock()
        self.initial, self.printed, self.status = initial, False, ""

    def update(self, n: int = 1) -> None:
        super().update(n)
        if self.clock() - self.last >= self.interval:
            self._print(progress_line(self.desc, self.done, self.total, self.unit, rate=self._rate(),
                                      at_most=self.at_most, note=self.status))

    def note(self, text: str) -> None:
        self.status = text

    def write(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def close(self) -> None:
        if self.printed:  # a loop that never reached the first interval stays quiet
            elapsed = self.clock() - self.started
            self._print(f"{self.desc}: {_count(self.done - self.initial, self.unit)} in {format_duration(elapsed)}"
                        f" ({_rate_text(self._rate(), self.unit)})" + (f"; {self.status}" if self.status else ""))

    def _rate(self) -> float:
        elapsed = self.clock() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def _print(self, line: str) -> None:
        self.write(line)
        self.printed, self.last = True, self.clock()


def progress_line(desc: str, done: int, total: int | None, unit: str, *, rate: float, at_most: bool = False,
                  note: str = "") -> str:
    """`desc: done/total unit (share), rate, ETA time`; without a total, the count and the rate only."""
    line = f"{desc}: {_count(done, unit)}"
    if total:
        line = f"{desc}: {_count(done, unit, total)} ({done / total:.1%})"
    line += f", {_rate_text(rate, unit)}"
    if total and rate > 0 and done < total:
        line += f", ETA {'at most ' if at_most else ''}{format_duration((total - done) / rate)}"
    return line + (f"; {note}" if note else "")


def format_duration(seconds: float) -> str:
    """`45s`, `3m 20s`, `2h 05m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _count(done: int, unit: str, total: int | None = None) -> str:
    if unit == "B":
        return _size(done) + (f"/{_size(total)}" if total is not None else "")
    return f"{done:,}" + (f"/{total:,}" if total is not None else "") + f" {unit}"


def _rate_text(rate: float, unit: str) -> str:
    if unit == "B":
        return f"{_size(rate)}/s"
    return f"{rate:.3g} {unit}/s" if rate < 100 else f"{rate:,.0f} {unit}/s"


def _size(value: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or suffix == "GiB":
            return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    raise AssertionError("unreachable")


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
