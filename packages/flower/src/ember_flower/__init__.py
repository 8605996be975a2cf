"""ember-flower: Flower apps run unmodified inside Ember jobs (docs/flower.md).

- :class:`FlowerRecipe`: the job (``flower_content``: the app folder, ``min_clients``,
  ``run_config``, ``timeout``).
- :class:`FlowerController`: the server's workflow (SuperLink on loopback, ``flwr run``,
  the run followed to its end, Flower's metrics to the job's records and tracking).
- :func:`ember_flower.site.run_site`: the sites' script (a SuperNode through the tunnel).
"""

from ember_flower.controller import FlowerController
from ember_flower.processes import FlowerError
from ember_flower.recipe import FlowerRecipe

__all__ = ["FlowerController", "FlowerError", "FlowerRecipe"]
