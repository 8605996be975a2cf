"""Ember: federated learning made as easy as running a script.

``from ember import Recipe, Run, SimEnv``; recipes live in :mod:`ember.recipes`, the
Client API in :mod:`ember.client`. Names are imported on first use so ``import ember`` and
the CLI stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("ember-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from ember.envs.poc import PocEnv
    from ember.envs.prod import ProdEnv
    from ember.envs.run import Run
    from ember.envs.sim import SimEnv
    from ember.recipes.base import Recipe

_LAZY = {
    "Recipe": "ember.recipes.base",
    "Run": "ember.envs.run",
    "SimEnv": "ember.envs.sim",
    "PocEnv": "ember.envs.poc",
    "ProdEnv": "ember.envs.prod",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["PocEnv", "ProdEnv", "Recipe", "Run", "SimEnv", "__version__"]
