"""The method registry: ``register_method`` decorator, ``get_method``, ``list_methods``."""

from __future__ import annotations

from typing import TypeVar

from segcam.methods.base import BaseCAM
from segcam.registry import Registry

__all__ = ["METHODS", "get_method", "list_methods", "register_method"]

METHODS: Registry[type[BaseCAM]] = Registry("method")
C = TypeVar("C", bound=type[BaseCAM])


def register_method(cls: C) -> C:
    """Class decorator adding a :class:`BaseCAM` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    METHODS.register(cls.name, cls)
    return cls


def get_method(name: str | BaseCAM) -> BaseCAM:
    """A method instance by name (or the instance itself).

    Raises:
        KeyError: Unknown name (the message lists close matches).
    """
    if isinstance(name, BaseCAM):
        return name
    return METHODS.get(name)()


def list_methods(pattern: str | None = None) -> list[str]:
    """Registered method names, optionally filtered by a shell wildcard."""
    return METHODS.names(pattern)
