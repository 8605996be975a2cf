"""A tiny deterministic Keras model with trainable and non-trainable weights (batch norm)."""

import keras
import numpy as np


def scaffold_net() -> keras.Sequential:
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="dense"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    rng = np.random.default_rng(3)
    for name in ("dense", "out"):
        layer = model.get_layer(name)
        layer.set_weights(
            [(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.weights]
        )
    return model
