"""TensorBoard-style writers whose values travel to the server's event files."""

from __future__ import annotations

import numbers
from typing import Any

from ember.client import api


class SummaryWriter:
    """A drop-in for ``torch.utils.tensorboard.SummaryWriter``'s scalar methods.

    Values are sent to the server, which writes them to TensorBoard event files under
    ``server/tb_events/<site>/`` when the recipe has ``add_experiment_tracking``.
    """

    def add_scalar(
        self, tag: str, scalar: Any, global_step: int | None = None, **kwargs: Any
    ) -> None:
        api.log(tag, _number(tag, scalar), "scalar", global_step)

    def add_scalars(
        self, tag: str, scalars: dict[str, Any], global_step: int | None = None, **kwargs: Any
    ) -> None:
        values = {k: _number(f"{tag}/{k}", v) for k, v in scalars.items()}
        api.log(tag, values, "scalars", global_step)

    def flush(self) -> None:
        """Values are sent as they are logged; nothing to flush."""

    def close(self) -> None:
        """Nothing to release."""


def _number(tag: str, value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"SummaryWriter: {tag} must be a number, got {type(value).__name__}")
    return float(value)
