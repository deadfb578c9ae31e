"""Validation rules shared by the configs and the methods: each raises ``ConfigError`` naming the field."""

from __future__ import annotations

from typing import Any

from .errors import ConfigError


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(allowed)}")


def at_least(name: str, value: Any, lo: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ConfigError(name, f"must be an integer >= {lo}, got {value!r}")


def between(name: str, value: Any, lo: int, hi: int) -> None:
    at_least(name, value, lo)
    if value > hi:
        raise ConfigError(name, f"{value:,} is too large (at most {hi:,})")
