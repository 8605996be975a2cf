"""What every ember-tf recipe adds to core's unified recipes: ``input_shape``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember.recipes import JobFile, ModelSetup, Recipe
from ember_tf.framework import TensorFlowFramework, check_input_shape


class KerasRecipe(Recipe):
    """The ``tensorflow`` framework fixed, and ``input_shape`` (one example's shape, without
    the batch axis), which builds a model given unbuilt (else its ``_input_shape``). Listed
    first among an ember-tf recipe's bases, before the core recipe it specialises."""

    framework = "tensorflow"

    def __init__(self, *, input_shape: Sequence[int] | None = None, **kwargs: Any) -> None:
        self.input_shape = check_input_shape(input_shape)
        super().__init__(**kwargs)

    def model_setup(
        self, framework: str, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> ModelSetup:
        """The ``tensorflow`` framework's setup, building an unbuilt model from
        ``input_shape``."""
        return TensorFlowFramework().setup_model(model, initial_ckpt, files, self.input_shape)
