"""Eager argument checks for recipes: errors name the argument and what it accepts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ember.errors import RecipeArgumentError


def check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RecipeArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_optional_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else check_int(name, value, minimum)


def check_str(name: str, value: Any, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RecipeArgumentError(f"{name} must be a non-empty string, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    value = getattr(value, "value", value)
    allowed = list(choices)
    if value not in allowed:
        raise RecipeArgumentError(f"{name} must be one of {allowed}, got {value!r}")
    return str(value)


def check_job_name(value: Any) -> str:
    name = check_str("name", value)
    assert name is not None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
        raise RecipeArgumentError(
            f"name must start with a letter or digit and hold only letters, digits, '_', '.', "
            f"'-' (it names the job's folder), got {value!r}"
        )
    return name


def check_regex(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise RecipeArgumentError(f"{name} must be a regex string or a list of them")
        value = "|".join(f"(?:{v})" for v in value)
    if not isinstance(value, str):
        raise RecipeArgumentError(f"{name} must be a regular expression string, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise RecipeArgumentError(
            f"{name}={value!r} is not a valid regular expression: {exc}"
        ) from None
    return value


def check_weights(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    ):
        raise RecipeArgumentError(
            "aggregation_weights must map site names to non-negative numbers, e.g. "
            f"{{'site-1': 1.0, 'site-2': 2.0}}, got {value!r}"
        )
    return {k: float(v) for k, v in value.items()}


def check_params_format(name: str, value: Any) -> str:
    """``numpy`` or a format some installed plugin converts numpy to (``pytorch``, ...)."""
    from ember.client.formats import NUMPY, get_converter

    fmt = check_str(name, value)
    assert fmt is not None
    if fmt != NUMPY:
        try:
            get_converter(NUMPY, fmt)
        except Exception as exc:
            raise RecipeArgumentError(
                f"{name}={fmt!r} is not a params format this installation knows: {exc}"
            ) from None
    return fmt


__all__ = [
    "RecipeArgumentError",
    "check_choice",
    "check_int",
    "check_job_name",
    "check_optional_int",
    "check_params_format",
    "check_regex",
    "check_str",
    "check_weights",
]
