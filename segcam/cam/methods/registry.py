"""The method registry: ``register_method`` decorator, ``get_method``, ``list_methods``."""

from __future__ import annotations

from typing import TypeVar

from segcam.cam.methods.base import BaseCAM
from segcam.utils.registry import Registry

__all__ = ["METHODS", "display_name", "get_method", "list_methods", "register_method"]

METHODS: Registry[type[BaseCAM]] = Registry("method")
C = TypeVar("C", bound=type[BaseCAM])


def register_method(cls: C) -> C:
    """Class decorator adding a :class:`BaseCAM` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    METHODS.register(cls.name, cls)
    return cls


def get_method(name: str | BaseCAM, **kwargs: object) -> BaseCAM:
    """A method instance by name (or the instance itself), built with ``kwargs``.

    Raises:
        KeyError: Unknown name (the message lists close matches).
        TypeError: An option the method does not take.
    """
    if isinstance(name, BaseCAM):
        if kwargs:
            raise TypeError("method options go to the constructor when an instance is given")
        return name
    cls = METHODS.get(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"method {name!r} does not take options {sorted(kwargs)} ({exc})") from exc


def list_methods(pattern: str | None = None) -> list[str]:
    """Registered method names, optionally filtered by a shell wildcard."""
    return METHODS.names(pattern)


def display_name(name: str) -> str:
    """The one title of a method in figures and pages (``seg_grad_cam`` -> ``Seg-Grad-CAM``); unknown names pass."""
    try:
        cls = METHODS.get(name)
    except KeyError:
        return name
    return cls.display_name or cls.name
