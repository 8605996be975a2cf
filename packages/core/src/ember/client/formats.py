"""Params formats: what a training script receives (``numpy`` arrays, torch tensors, ...).

The server and the wire speak numpy; a framework package registers params converters
(``ember_params_converters``) named ``<format>-from-numpy`` and ``<format>-to-numpy`` that turn
a params dict into its framework's format and back, sharing memory where they can.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NUMPY = "numpy"

Converter = Callable[[dict[str, Any]], dict[str, Any]]


def converter_name(from_format: str, to_format: str) -> str:
    """The registered name of the converter between two formats (one of them numpy)."""
    if from_format == NUMPY:
        return f"{to_format}-from-numpy"
    if to_format == NUMPY:
        return f"{from_format}-to-numpy"
    raise ValueError(f"params convert through numpy; no direct {from_format} -> {to_format}")


def get_converter(from_format: str, to_format: str) -> Converter | None:
    """The converter between two formats (None when they are the same); an unknown format
    raises an error naming the package to install."""
    if from_format == to_format:
        return None
    from ember.plugins.registry import get_registry

    entry = get_registry().get("params_converter", converter_name(from_format, to_format))
    target = entry.item.load()
    return target() if isinstance(target, type) else target  # type: ignore[no-any-return]


def result_converter(params_format: str) -> Converter | None:
    """The converter a script's sent params go through (``<format>-to-numpy``, when its
    registration says ``converts_results``), or None."""
    if params_format == NUMPY:
        return None
    from ember.plugins.registry import get_registry

    registered = get_registry().items("params_converter").get(converter_name(params_format, NUMPY))
    if registered is None or not registered.item.converts_results:
        return None
    return get_converter(params_format, NUMPY)


def convert_params(params: Any, from_format: str, to_format: str) -> Any:
    """``params`` (a dict, or None) in ``to_format``."""
    convert = get_converter(from_format, to_format)
    if convert is None or not params:
        return params
    return convert(params)
