"""Execution environments: where a recipe runs.

Names are imported on first use: ``from ember import PocEnv`` (or ProdEnv) does not import
SimEnv and the in-process runtime it runs jobs with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember.envs.base import Env
    from ember.envs.run import Run
    from ember.envs.sim import SimEnv

_LAZY = {"Env": "ember.envs.base", "Run": "ember.envs.run", "SimEnv": "ember.envs.sim"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember.envs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["Env", "Run", "SimEnv"]
