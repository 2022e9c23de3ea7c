"""Progress on stderr for the commands: a tqdm bar on a terminal, plain log lines otherwise.

A batch writing to a log file (stderr not a terminal) gets one line every :data:`LOG_SECONDS` seconds or
every tenth of the job, whichever comes first, with the rate and the time left, instead of silence.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LOG_SECONDS", "TerminalProgress"]

#: Seconds between plain progress lines when stderr is not a terminal.
LOG_SECONDS = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class TerminalProgress:
    """A :class:`segcam.utils.progress.Progress` for the command line."""

    def __init__(self, unit: str = "img", stream: TextIO | None = None, every: float = LOG_SECONDS) -> None:
        self.unit = unit
        self.stream = stream or sys.stderr
        self.every = every
        self._bar: Any = None
        self._total = self._done = 0
        self._what = ""
        self._t0 = self._last = 0.0
        self._next_share = 0.1

    def start(self, total: int, what: str) -> None:  # noqa: D102
        self._total, self._done, self._what = total, 0, what
        self._t0 = self._last = time.monotonic()
        self._next_share = 0.1
        if total and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=what, unit=self.unit, file=self.stream)

    def advance(self, n: int = 1) -> None:  # noqa: D102
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        share = self._done / self._total if self._total else 1.0
        if self._total and (now - self._last >= self.every or share >= self._next_share or self._done == self._total):
            self._last = now
            while self._next_share <= share:
                self._next_share += 0.1
            rate = self._done / max(now - self._t0, 1e-9)
            left = (self._total - self._done) / rate if rate > 0 else 0.0
            print(f"segcam: {self._what}: {self._done}/{self._total} {self.unit} ({share:.0%}), {rate:.2f} {self.unit}/s, "
                  f"{_duration(now - self._t0)} spent, about {_duration(left)} left", file=self.stream, flush=True)

    def step(self, done: int, total: int) -> None:
        """Progress within one image (tiles of a large photo): the bar's postfix, or a line now and then."""
        if total <= 2:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"photo {done}/{total} steps", refresh=True)
            return
        now = time.monotonic()
        if now - self._last >= self.every / 3 or done == total:
            self._last = now
            print(f"segcam: {self._what}: image {self._done + 1}/{self._total}: step {done}/{total}", file=self.stream,
                  flush=True)

    def close(self) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.close()
            self._bar = None
