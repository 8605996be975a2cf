"""``FedOptRecipe``: FedAvg whose server applies the averaged update with a torch optimizer."""

from __future__ import annotations

from typing import Any

from ember_pt.controllers.fedopt import (
    DEFAULT_LR_SCHEDULER_ARGS,
    DEFAULT_OPTIMIZER_ARGS,
    class_args,
)
from ember_pt.recipes.fedavg import FedAvgRecipe

FEDOPT_CONTROLLER = "ember_pt.controllers.fedopt:FedOptController"


class FedOptRecipe(FedAvgRecipe):
    """FedOpt (Reddi et al., 2021) of a PyTorch model: the sites train as in FedAvg; the
    server takes ``global - average`` as a gradient and steps a torch optimizer with it.

    ``optimizer_args``: ``{"path": "torch.optim.Class", "args": {...}}``, built over the
    server's copy of the model's floating-point entries (None: NVFlare's default,
    ``SGD(lr=1.0, momentum=0.6)``). ``lr_scheduler_args``: the same shape for a scheduler
    stepped after every round (default ``CosineAnnealingLR(T_max=num_rounds,
    eta_min=0.9)``; a ``CosineAnnealingLR`` without ``T_max`` gets ``num_rounds``); None
    for no scheduler. Both are built in the first round on the server (which needs torch)
    and keep their state across rounds. The other arguments are
    :class:`ember_pt.recipes.FedAvgRecipe`'s.
    """

    controller = FEDOPT_CONTROLLER

    def __init__(
        self,
        *,
        name: str = "fedopt",
        optimizer_args: dict[str, Any] | None = None,
        lr_scheduler_args: dict[str, Any] | None = DEFAULT_LR_SCHEDULER_ARGS,
        **kwargs: Any,
    ) -> None:
        # checked now; resolved (T_max) in controller_args, once num_rounds is checked
        self.optimizer_args = (
            None if optimizer_args is None else class_args("optimizer_args", optimizer_args)
        )
        self.lr_scheduler_args = (
            None
            if lr_scheduler_args is None
            else class_args("lr_scheduler_args", lr_scheduler_args)
        )
        super().__init__(name=name, **kwargs)

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """FedAvg's arguments plus the optimizer's and the scheduler's, written out in full."""
        args = super().controller_args(args)
        scheduler = self.lr_scheduler_args
        return {
            **args,
            "optimizer_args": class_args(
                "optimizer_args", self.optimizer_args or DEFAULT_OPTIMIZER_ARGS
            ),
            "lr_scheduler_args": None
            if scheduler is None
            else class_args("lr_scheduler_args", scheduler, args["num_rounds"]),
        }
