"""``FedOptRecipe``: FedAvg whose server applies the averaged update with a Keras optimizer."""

from __future__ import annotations

from typing import Any

from ember_tf.controllers.fedopt import (
    DEFAULT_LR_SCHEDULER_ARGS,
    DEFAULT_OPTIMIZER_ARGS,
    class_args,
    scheduler_args,
)
from ember_tf.recipes.fedavg import FedAvgRecipe

FEDOPT_CONTROLLER = "ember_tf.controllers.fedopt:FedOptController"


class FedOptRecipe(FedAvgRecipe):
    """FedOpt (Reddi et al., 2021) of a Keras model, as NVFlare's TensorFlow
    ``FedOptRecipe``: the sites train as in FedAvg; the server takes ``global - average`` as
    a gradient and applies it with a Keras optimizer.

    ``optimizer_args``: ``{"path": "keras.optimizers.Class", "args": {...}}``
    (``tensorflow.keras.optimizers.Class`` as in NVFlare works too; None: NVFlare's
    default, ``SGD(learning_rate=1.0, momentum=0.6)``). ``lr_scheduler_args``: the same
    shape for a ``keras.optimizers.schedules.LearningRateSchedule`` that becomes the
    optimizer's learning rate, advanced once a round (default ``CosineDecay(
    initial_learning_rate=<the optimizer's learning rate>, decay_steps=num_rounds,
    alpha=0.9)``; ``decay_steps`` left out of a ``CosineDecay`` or given as None becomes
    ``num_rounds``, a missing ``initial_learning_rate`` the optimizer's); None for a fixed
    learning rate. Both are built on the server (which needs keras) and keep their state
    across rounds. The server steps the model's trainable weights; its non-trainable
    weights (batch-norm statistics) take the sites' average. The other arguments are
    :class:`ember_tf.recipes.FedAvgRecipe`'s.
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
        # checked now; completed (decay_steps, initial_learning_rate) in controller_args
        self.optimizer_args = (
            None if optimizer_args is None else class_args("optimizer_args", optimizer_args)
        )
        self.lr_scheduler_args = (
            None if lr_scheduler_args is None else scheduler_args(lr_scheduler_args)
        )
        super().__init__(name=name, **kwargs)

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """FedAvg's arguments plus the optimizer's and the schedule's, written out in full."""
        args = super().controller_args(args)
        optimizer = class_args("optimizer_args", self.optimizer_args or DEFAULT_OPTIMIZER_ARGS)
        schedule = self.lr_scheduler_args
        return {
            **args,
            "optimizer_args": optimizer,
            "lr_scheduler_args": None
            if schedule is None
            else scheduler_args(schedule, args["num_rounds"], optimizer),
        }
