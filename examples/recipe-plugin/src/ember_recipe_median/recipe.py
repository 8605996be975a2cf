"""``MedianRecipe``: FedAvg's parameters, with a robust server workflow.

Importing this module imports no numpy and no server runtime: ``ember recipe show`` loads it
to read the signature; the controller is named by a ``module:Class`` string.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ember.recipes import FedAvgRecipe, RecipeArgumentError, check_choice, check_int

#: how the server combines the sites' models, coordinate by coordinate
AGGREGATIONS = ("median", "trimmed_mean")


class MedianRecipe(FedAvgRecipe):
    """FedAvg with a robust server: each round the global model becomes the coordinate-wise
    median of the sites' models, or their trimmed mean, so that a minority of sites sending
    wild models cannot drag it along.

    ``aggregation="median"`` (the default) takes, at every coordinate, the median of the
    sites' values. ``aggregation="trimmed_mean"`` drops the ``trim`` largest and the ``trim``
    smallest values at every coordinate (``trim`` defaults to 1) and averages the rest; it
    needs ``min_clients > 2 * trim``. Every site counts alike, so there are no
    ``aggregation_weights``; the server works on numpy arrays, whatever the ``framework``.
    Every other parameter is :class:`ember.recipes.FedAvgRecipe`'s.
    """

    controller = "ember_recipe_median.controller:MedianController"
    #: FedAvg parameters this recipe sets itself: not in its signature, refused by name
    replaces: ClassVar[tuple[str, ...]] = ("aggregation_weights", "server_expected_format")

    def __init__(
        self,
        *,
        name: str = "median",
        aggregation: str = "median",
        trim: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.aggregation = check_choice("aggregation", aggregation, AGGREGATIONS)
        if self.aggregation == "median":
            if trim is not None:
                raise RecipeArgumentError(
                    f"trim={trim!r} applies to aggregation='trimmed_mean' only; drop trim= "
                    "or set aggregation='trimmed_mean'"
                )
            self.trim = 0
        else:
            self.trim = 1 if trim is None else check_int("trim", trim, 1)
        super().__init__(name=name, **kwargs)  # checks FedAvg's parameters, builds the job
        if self.job.min_clients <= 2 * self.trim:
            raise RecipeArgumentError(
                f"trim={self.trim} drops {2 * self.trim} of the sites' values at every "
                f"coordinate, so aggregation='trimmed_mean' needs min_clients > {2 * self.trim}"
                f" (got min_clients={self.job.min_clients}); lower trim or raise min_clients"
            )

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """FedAvg's controller arguments, less the weights, plus the aggregation."""
        args = {k: v for k, v in args.items() if k != "aggregation_weights"}
        return {**args, "aggregation": self.aggregation, "trim": self.trim}
