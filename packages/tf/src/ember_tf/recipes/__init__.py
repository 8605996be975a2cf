"""ember-tf's recipes (importing them does not import tensorflow); each loads on first use."""

from __future__ import annotations

import importlib
from typing import Any

# class name -> module under ember_tf.recipes
_MODULES = {
    "FedAvgRecipe": "fedavg",
    "FedOptRecipe": "fedopt",
    "ScaffoldRecipe": "scaffold",
    "FedProxRecipe": "fedprox",
    "CyclicRecipe": "cyclic",
}

__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'ember_tf.recipes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ember_tf.recipes.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
