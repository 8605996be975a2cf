"""``FedProxRecipe`` for PyTorch: FedAvg whose sites add a proximal term to their loss."""

from __future__ import annotations

from ember.recipes import FedProxRecipe as UnifiedFedProxRecipe


class FedProxRecipe(UnifiedFedProxRecipe):
    """FedProx (Li et al., 2020) of a PyTorch model:
    ``ember.recipes.FedProxRecipe(framework="pytorch")``. The server runs FedAvg; every train
    task carries ``meta["fedprox_mu"]``, which a training script reads
    (``ember_pt.fedprox.fedprox_mu(input_model)``) and uses to add
    ``PTFedProxLoss(mu)(model, global_model)`` to its loss. The other arguments are
    :class:`ember_pt.recipes.FedAvgRecipe`'s.
    """

    framework = "pytorch"
