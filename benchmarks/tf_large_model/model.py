"""The benchmark's model: ``layers`` float32 ``Dense(width)`` layers in a chain (a functional
``keras.Model``, layers named ``dense_0`` ...), weights filled from a seed.

Every weight is filled with integers in [-100, 100) drawn from its own generator, so the job
can rebuild any single weight to check the final model (integers plus the clients' constants
and their averages stay exact in float32).
"""

from __future__ import annotations

import math

import keras
import numpy as np

LAYERS = 4
MIB = 1 << 20


def width_for(model_bytes: float, layers: int = LAYERS) -> int:
    """The width at which ``layers`` square Dense layers weigh about ``model_bytes``."""
    return max(1, round(math.sqrt(model_bytes / (layers * 4))))


def values(shape: tuple[int, ...], seed: int, index: int) -> np.ndarray:
    """Weight ``index``'s initial values: integers in [-100, 100) as float32."""
    rng = np.random.default_rng(seed * 1000 + index)
    return rng.integers(-100, 100, size=shape, dtype=np.int32).astype(np.float32)


def build(width: int, layers: int = LAYERS, fill_seed: int | None = 0) -> keras.Model:
    """The chain of Dense layers; weights from ``fill_seed`` (zeros when None: a site's model,
    which the received weights overwrite)."""
    inputs = keras.Input((width,), name="x")
    x = inputs
    for i in range(layers):
        x = keras.layers.Dense(
            width, name=f"dense_{i}", kernel_initializer="zeros", bias_initializer="zeros"
        )(x)
    model = keras.Model(inputs, x, name="big_dense")
    if fill_seed is not None:
        for index, variable in enumerate(model.weights):
            variable.assign(values(tuple(variable.shape), fill_seed, index))
    return model


def model_bytes(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) * 4 for v in model.weights)
