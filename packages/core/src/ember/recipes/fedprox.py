"""``FedProxRecipe``: the unified FedProx recipe, FedAvg whose sites add a proximal term."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ember.recipes.fedavg import FedAvgRecipe
from ember.recipes.validation import RecipeArgumentError

#: the task meta key a training script reads (the frameworks' FedProx helpers use it)
FEDPROX_MU = "fedprox_mu"


def check_fedprox_mu(value: Any) -> float:
    """``fedprox_mu`` as a float, if it is a finite real number >= 0."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
        or value < 0
    ):
        raise RecipeArgumentError(f"fedprox_mu must be a finite number >= 0, got {value!r}")
    return float(value)


class FedProxRecipe(FedAvgRecipe):
    """FedProx (Li et al., 2020): the server runs FedAvg; every train task carries
    ``meta["fedprox_mu"]``, which a training script reads and uses to add
    ``mu/2 * ||w - w_global||^2`` to its loss (the frameworks' helpers:
    ``ember_pt.fedprox.PTFedProxLoss``, ``ember_tf.fedprox.TFFedProxLoss``). The other
    arguments are :class:`FedAvgRecipe`'s; framework packages subclass it with their
    framework fixed.
    """

    def __init__(self, *, name: str = "fedprox", fedprox_mu: float = 0.01, **kwargs: Any) -> None:
        self.fedprox_mu = check_fedprox_mu(fedprox_mu)
        super().__init__(name=name, **kwargs)

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """FedAvg's arguments, with ``fedprox_mu`` added to every task's meta."""
        args = super().controller_args(args)
        return {**args, "task_meta": {**args.get("task_meta", {}), FEDPROX_MU: self.fedprox_mu}}
