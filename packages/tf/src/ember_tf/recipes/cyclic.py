"""``CyclicRecipe``: cyclic weight transfer of a Keras model from site to site."""

from __future__ import annotations

from ember.recipes import CyclicRecipe as UnifiedCyclicRecipe
from ember_tf.recipes._keras import KerasRecipe


class CyclicRecipe(KerasRecipe, UnifiedCyclicRecipe):
    """Cyclic weight transfer (NVFlare's ``CyclicRecipe``) of a Keras model:
    ``ember.recipes.CyclicRecipe(framework="tensorflow")`` plus ``input_shape``. ``model``
    and ``initial_ckpt`` are :class:`ember_tf.recipes.FedAvgRecipe`'s; the last model of each
    round is saved as ``server/models/global_model.weights.h5``.
    """
