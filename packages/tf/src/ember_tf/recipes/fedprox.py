"""``FedProxRecipe`` for Keras: FedAvg whose sites add a proximal term to their loss."""

from __future__ import annotations

from ember.recipes import FedProxRecipe as UnifiedFedProxRecipe
from ember_tf.recipes._keras import KerasRecipe


class FedProxRecipe(KerasRecipe, UnifiedFedProxRecipe):
    """FedProx of a Keras model: ``ember.recipes.FedProxRecipe(framework="tensorflow")``
    plus ``input_shape``. Every train task carries ``meta["fedprox_mu"]``; a training script
    reads it (``ember_tf.fedprox.fedprox_mu(input_model)``) and adds
    ``TFFedProxLoss(mu)(model, input_model.params)`` to its loss. The other arguments are
    :class:`ember_tf.recipes.FedAvgRecipe`'s.
    """
