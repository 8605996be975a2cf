"""A tiny Keras model for the tests (layers named, so every site agrees on the names)."""

from __future__ import annotations

import keras


class TinyNet(keras.Sequential):
    """3 inputs -> 4 -> 2; built from ``_input_shape`` when given unbuilt (NVFlare's hello-tf
    convention)."""

    def __init__(self, width: int = 4) -> None:
        super().__init__(
            [keras.layers.Dense(width, name="hidden"), keras.layers.Dense(2, name="out")]
        )
        self._input_shape = (3,)


def functional(width: int = 4) -> keras.Model:
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(width, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))


class ConstNet(keras.Sequential):
    """TinyNet with constant initial weights, so a model built on the server is known here."""

    def __init__(self, width: int = 4, value: float = 0.25) -> None:
        init = keras.initializers.Constant(value)
        super().__init__(
            [
                keras.layers.Dense(width, name="hidden", kernel_initializer=init),
                keras.layers.Dense(2, name="out", kernel_initializer=init),
            ]
        )
        self._input_shape = (3,)
