"""ember-flower: Flower apps run unmodified inside Ember jobs (docs/flower.md).

- :class:`FlowerRecipe`: the job (``flower_content``: the app folder, ``min_clients``,
  ``run_config``, ``timeout``).
- :class:`FlowerController`: the server's workflow (SuperLink on loopback, ``flwr run``,
  the run followed to its end, Flower's metrics to the job's records and tracking).
- :func:`ember_flower.site.run_site`: the sites' script (a SuperNode through the tunnel).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember_flower.controller import FlowerController
    from ember_flower.processes import FlowerError
    from ember_flower.recipe import FlowerRecipe

__all__ = ["FlowerController", "FlowerError", "FlowerRecipe"]

# imported on first use: the plugin hook module (ember_flower.plugin) is loaded by every
# Ember process, and jobs that do not use Flower must not pay for its controller
_LAZY = {
    "FlowerController": "ember_flower.controller",
    "FlowerError": "ember_flower.processes",
    "FlowerRecipe": "ember_flower.recipe",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ember_flower' has no attribute {name!r}")
