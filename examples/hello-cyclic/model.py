"""The model (NVFlare hello-tf style): a ``keras.Sequential`` subclass, built from
``_input_shape`` wherever it is created unbuilt (the server builds it from its class)."""

import keras


class DigitsNet(keras.Sequential):
    """64 pixels -> ``hidden`` ReLU units -> 10 logits.

    The layers are named: sites and server match weights by layer name, and Keras's automatic
    names (``dense``, ``dense_1``, ...) depend on how many layers the thread made before."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__(name="digits_net")
        self._input_shape = (64,)  # one example's shape, without the batch axis
        self.add(keras.layers.Dense(hidden, activation="relu", name="hidden"))
        self.add(keras.layers.Dense(10, name="logits"))
