"""``FedAvgRecipe`` for Keras: federated averaging of a Keras model's weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember.recipes import FedAvgRecipe as UnifiedFedAvgRecipe
from ember.recipes import JobFile, ModelSetup
from ember_tf.framework import TensorFlowFramework, check_input_shape


class FedAvgRecipe(UnifiedFedAvgRecipe):
    """FedAvg of a Keras model: ``ember.recipes.FedAvgRecipe(framework="tensorflow")`` plus
    ``input_shape``, which builds a model given unbuilt (else its ``_input_shape``).

    ``model`` is a ``keras.Model`` instance or ``{"path": "module.Class", "args": {...}}``
    (``class_path`` accepted); ``initial_ckpt`` a ``.keras`` or ``.weights.h5`` file. Sites
    receive ``{layer name: [arrays]}`` (NVFlare's Keras convention: ``model.get_layer(name)
    .set_weights(arrays)``) and send the same back; the server averages each weight
    element-wise, weighted by ``NUM_STEPS_CURRENT_ROUND``, and saves
    ``server/models/global_model.weights.h5`` (and ``best_model.weights.h5``).
    """

    framework = "tensorflow"

    def __init__(
        self, *, name: str = "fedavg", input_shape: Sequence[int] | None = None, **kwargs: Any
    ) -> None:
        self.input_shape = check_input_shape(input_shape)
        super().__init__(name=name, **kwargs)

    def model_setup(
        self, framework: str, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> ModelSetup:
        """The ``tensorflow`` framework's setup, building an unbuilt model from
        ``input_shape``."""
        return TensorFlowFramework().setup_model(model, initial_ckpt, files, self.input_shape)
