"""How long-running library calls report progress without printing: a small protocol the caller implements.

The library never writes to the terminal; :mod:`segcam.cli` turns these calls into a progress bar (a
terminal) or plain log lines (a log file), and the app into its own progress bar.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    """Receives ``start`` once, ``advance`` as items finish, ``close`` at the end (also after an error)."""

    def start(self, total: int, what: str) -> None:
        """``total`` items of kind ``what`` (``"explain"``, ``"evaluate"``...) are about to be processed."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items are done."""

    def close(self) -> None:
        """No more items will come."""


class NullProgress:
    """A :class:`Progress` that reports nothing (the default of every library call)."""

    def start(self, total: int, what: str) -> None:  # noqa: D102
        pass

    def advance(self, n: int = 1) -> None:  # noqa: D102
        pass

    def close(self) -> None:  # noqa: D102
        pass
