"""A small name -> object registry with ``list`` filtering and helpful errors."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, Iterator, TypeVar

__all__ = ["Registry", "unknown_name_message"]

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, options: list[str]) -> str:
    """``unknown model 'hrsegnet_b4'; did you mean: hrsegnet_b48, hrsegnet_b16? (available: ...)``."""
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (available: {', '.join(options)})"


class Registry(Generic[T]):
    """Objects registered under unique lower-case names.

    Args:
        kind: What is registered ("model", "method"), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T, override: bool = False) -> T:
        """Add ``obj`` as ``name``.

        Raises:
            KeyError: If the name is taken and ``override`` is False.
        """
        if name in self._items and not override:
            raise KeyError(f"{self.kind} {name!r} is already registered; pass override=True to replace it")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        """Look ``name`` up.

        Raises:
            KeyError: For an unknown name, listing the close matches and all names.
        """
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by a shell wildcard (``hrsegnet_*``) or a substring (``b48``)."""
        names = sorted(self._items)
        if not pattern:
            return names
        if any(ch in pattern for ch in "*?["):
            return [n for n in names if fnmatch.fnmatch(n, pattern)]
        return [n for n in names if pattern.casefold() in n.casefold()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self.names())})"
