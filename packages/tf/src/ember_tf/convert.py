"""Keras weights <-> the numpy exchange format (what the server averages and the wire carries).

Scripts speak NVFlare's Keras convention: ``{layer.name: layer.get_weights()}``, a list of
arrays per layer (``model.get_layer(name).set_weights(arrays)`` loads it back). The exchange
format is flat: one array per weight, keyed ``"<layer name>/<index>"`` (Keras forbids ``/``
in names, so the key is unambiguous), which the server averages element-wise and streams one
array at a time. This module imports tensorflow only to convert a tensor that is already one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SEPARATOR = "/"


def weight_key(layer: str, index: int) -> str:
    """The exchange key of weight ``index`` of layer ``layer``: ``"dense/0"``."""
    return f"{layer}{SEPARATOR}{index}"


def split_key(key: str) -> tuple[str, int] | None:
    """``"dense/1"`` -> ``("dense", 1)``; None for a key that is not a layer weight."""
    layer, sep, index = key.rpartition(SEPARATOR)
    if not sep or not layer or not index.isdigit():
        return None
    return layer, int(index)


def to_numpy(value: Any) -> np.ndarray[Any, Any]:
    """A TensorFlow tensor or variable, a Keras variable, or an array-like as a numpy array.

    Dtypes numpy lacks (bfloat16 and the float8 family, which TF hands out as ``ml_dtypes``
    arrays) become float32, exactly, since the server averages in numpy."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind == "V" or type(array.dtype).__module__.startswith("ml_dtypes"):
        array = array.astype(np.float32)
    return array


def flat_weights(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{layer name: [weights]}`` or ``{"layer/i": weight}`` keyed the latter way, the values
    as they are (tensors stay tensors)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, list | tuple):
            for index, weight in enumerate(value):
                out[weight_key(str(name), index)] = weight
        else:
            out[str(name)] = value
    return out


def from_keras_weights(params: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """``{layer name: [arrays]}`` (a script's params) as the flat exchange format; an entry
    that is already one array (a flat key) passes through, converted to numpy."""
    return {key: to_numpy(value) for key, value in flat_weights(params).items()}


def to_keras_weights(params: Mapping[str, Any]) -> dict[str, Any]:
    """The exchange format as ``{layer name: [arrays]}`` in weight order, for
    ``model.get_layer(name).set_weights(arrays)``; keys that are not layer weights, and
    values already in per-layer form, pass through."""
    layers: dict[str, dict[int, Any]] = {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        parts = split_key(key) if not isinstance(value, list | tuple) else None
        if parts is None:
            out[key] = value
            continue
        layers.setdefault(parts[0], {})[parts[1]] = value
    for layer, weights in layers.items():
        if sorted(weights) != list(range(len(weights))):
            raise ValueError(
                f"layer {layer!r} has weights {sorted(weights)}; expected 0..{len(weights) - 1}"
            )
        out[layer] = [weights[i] for i in range(len(weights))]
    return out


def model_params(model: Any) -> dict[str, np.ndarray[Any, Any]]:
    """A Keras model's weights in the exchange format (``{"<layer>/<i>": array}``)."""
    return from_keras_weights({layer.name: layer.get_weights() for layer in model.layers})


def trainable_weights(model: Any) -> dict[str, Any]:
    """A Keras model's trainable weights (its variables) by exchange key,
    ``"<layer name>/<index in layer.get_weights()>"`` (the keys of
    :func:`ember_tf.convert.model_params`), in the model's layer order."""
    out: dict[str, Any] = {}
    for layer in model.layers:
        trainable = {id(w) for w in layer.trainable_weights}
        for index, weight in enumerate(layer.weights):
            if id(weight) in trainable:
                out[weight_key(layer.name, index)] = weight
    return out


def load_model_params(model: Any, params: Mapping[str, Any]) -> None:
    """Set a Keras model's weights from params in either format; every layer with weights
    must be there, with the shapes it has (a clear error names the first that is not)."""
    by_layer = to_keras_weights(params)
    for layer in model.layers:
        if not layer.weights:
            continue
        weights = by_layer.get(layer.name)
        if weights is None:
            raise ValueError(
                f"the params have no weights for layer {layer.name!r} (they have "
                f"{sorted(by_layer)[:8]}); the model and the params must come from the same "
                "architecture with the same layer names"
            )
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(np.shape(w)) for w in weights]
        if expected != got:
            raise ValueError(f"layer {layer.name!r} has weight shapes {expected}, params {got}")
        layer.set_weights([to_numpy(w) for w in weights])
