"""FedProx's proximal term for training scripts, and the ``mu`` the recipe sends.

loss = criterion(model(x), y) + PTFedProxLoss(mu)(model, global_model)

``global_model`` is a frozen copy of the model the site received this round (or that model's
state_dict, on the same device as ``model``); the term pulls the trained weights towards it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

#: the key of ``FLModel.meta`` under which ``FedProxRecipe`` sends ``fedprox_mu``
FEDPROX_MU = "fedprox_mu"


def check_mu(mu: Any, name: str = "mu") -> float:
    """``mu`` as a float, if it is a finite real number >= 0; a ``ValueError`` otherwise."""
    if (
        not isinstance(mu, numbers.Real)
        or isinstance(mu, bool)
        or not math.isfinite(float(mu))
        or mu < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {mu!r}")
    return float(mu)


class PTFedProxLoss(nn.Module):
    """``mu / 2 * sum over parameters of ||w - w_global||^2`` (as NVFlare's PTFedProxLoss).

    ``forward(input_model, target_model)``: ``input_model`` is the model being trained,
    ``target_model`` the global model it started from (an ``nn.Module`` or a mapping of
    parameter name to tensor). Parameters are matched by name; the target is detached, so
    gradients flow into ``input_model`` only.
    """

    def __init__(self, mu: float = 0.01) -> None:
        super().__init__()
        self.mu = check_mu(mu)

    def forward(
        self, input_model: nn.Module, target_model: nn.Module | Mapping[str, Tensor]
    ) -> Tensor:
        targets = (
            dict(target_model.named_parameters())
            if isinstance(target_model, nn.Module)
            else target_model
        )
        total: Tensor | None = None
        for name, param in input_model.named_parameters():
            if name not in targets:
                raise KeyError(f"the global model has no parameter {name!r}")
            diff = param - targets[name].detach()
            term = torch.sum(diff * diff)
            total = term if total is None else total + term
        if total is None:  # a model without parameters
            return torch.zeros(())
        return (self.mu / 2) * total

    def extra_repr(self) -> str:
        return f"mu={self.mu}"


def fedprox_mu(input_model: Any, default: float | None = None) -> float | None:
    """The ``fedprox_mu`` the recipe put in a received ``FLModel``'s meta, else ``default``."""
    meta = getattr(input_model, "meta", None) or {}
    value = meta.get(FEDPROX_MU)
    return default if value is None else check_mu(value, FEDPROX_MU)
