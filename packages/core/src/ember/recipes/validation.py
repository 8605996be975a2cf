"""Eager argument checks for recipes: errors name the argument and what it accepts."""

from __future__ import annotations

import copy
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


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def check_class_args(name: str, value: Any) -> dict[str, Any]:
    """A copy of ``{"path": "pkg.module.Class", "args": {...}}`` (``args`` optional; NVFlare's
    ``"config_type": "dict"`` is accepted and dropped): a class a job builds on the server
    (an optimizer, a scheduler)."""
    shape = f"{name} must be {{'path': 'package.module.Class', 'args': {{...}}}}"
    if not isinstance(value, dict):
        raise RecipeArgumentError(f"{shape}, got {type(value).__name__}")
    extra = set(value) - {"path", "args", "config_type"}
    if extra:
        raise RecipeArgumentError(f"{shape}; unexpected keys {sorted(extra)}")
    if value.get("config_type", "dict") != "dict":
        raise RecipeArgumentError(f"{name}['config_type'] can only be 'dict'")
    path = value.get("path")
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        raise RecipeArgumentError(f"{shape}; 'path' must be a dotted name, got {path!r}")
    args = value.get("args", {})
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise RecipeArgumentError(f"{shape}; 'args' must be a dict of keyword arguments")
    return {"path": path, "args": copy.deepcopy(args)}


__all__ = [
    "RecipeArgumentError",
    "check_choice",
    "check_class_args",
    "check_int",
    "check_job_name",
    "check_optional_int",
    "check_params_format",
    "check_regex",
    "check_str",
    "check_weights",
]
