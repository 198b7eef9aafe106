"""Exceptions raised by odecheck."""

from __future__ import annotations

from typing import Any


class OdecheckError(Exception):
    """Base class of every error odecheck raises on purpose."""


class InvalidArgument(OdecheckError, ValueError):
    """An argument has the wrong type, shape, dtype or value.

    The message names the argument, the value received and what was expected; ``argument`` holds
    the argument's name (for front ends that call it something else, e.g. a command-line flag).
    """

    argument: str | None = None


def invalid(name: str, value: Any, expected: str) -> InvalidArgument:
    """Build an :class:`InvalidArgument` with the house message format."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    err = InvalidArgument(f"{name}={shown}: expected {expected}")
    err.argument = name
    return err
