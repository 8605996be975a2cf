"""``FedAvgRecipe`` for Keras: federated averaging of a Keras model's weights."""

from __future__ import annotations

from ember.recipes import FedAvgRecipe as UnifiedFedAvgRecipe
from ember_tf.recipes._keras import KerasRecipe


class FedAvgRecipe(KerasRecipe, UnifiedFedAvgRecipe):
    """FedAvg of a Keras model: ``ember.recipes.FedAvgRecipe(framework="tensorflow")`` plus
    ``input_shape``, which builds a model given unbuilt (else its ``_input_shape``).

    ``model`` is a ``keras.Model`` instance or ``{"path": "module.Class", "args": {...}}``
    (``class_path`` accepted); ``initial_ckpt`` a ``.keras`` or ``.weights.h5`` file. Sites
    receive ``{layer name: [arrays]}`` (NVFlare's Keras convention: ``model.get_layer(name)
    .set_weights(arrays)``) and send the same back; the server averages each weight
    element-wise, weighted by ``NUM_STEPS_CURRENT_ROUND``, and saves
    ``server/models/global_model.weights.h5`` (and ``best_model.weights.h5``).
    """
