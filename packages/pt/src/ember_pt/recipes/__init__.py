"""ember-pt's recipes (importing them does not import torch); each loads on first use."""

from __future__ import annotations

import importlib
from typing import Any

# class name -> module under ember_pt.recipes
_MODULES = {
    "FedAvgRecipe": "fedavg",
    "FedAvgRecipeWithHE": "fedavg_he",
    "FedProxRecipe": "fedprox",
    "FedOptRecipe": "fedopt",
    "ScaffoldRecipe": "scaffold",
    "CyclicRecipe": "cyclic",
    "FedEvalRecipe": "fedeval",
    "SwarmLearningRecipe": "swarm",
}

__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'ember_pt.recipes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ember_pt.recipes.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
