"""FOBS decomposers for ``tf.Tensor``, ``tf.Variable`` and Keras variables.

A tensor travels as its TF dtype name plus a numpy array of its bits (see
:mod:`ember_tf.dtypes`), which core's numpy decomposer carries: out of line, and offered for
download (streamed) when large, exactly like a numpy array. No pickle, no ``ml_dtypes``
type on the wire. Where it lands decides what it becomes:

- a site or a script (the default): an eager ``tf.Tensor``, bit-exact. Variables (a
  ``tf.Variable``, a Keras variable) decode as a ``tf.Tensor`` of their value too, like a
  ``torch.nn.Parameter`` decodes as a plain tensor: a received weight is a value, to
  ``variable.assign(...)`` or ``layer.set_weights(...)``, not a second variable (a
  ``tf.Variable`` made while decoding would land in whatever ``tf.function``, device scope
  or distribution strategy happens to be current);
- the server (an endpoint decoding with ``lazy_tensors``): a numpy array, or core's lazy
  reference to one, because the server aggregates numpy; bfloat16, float8, float4 and
  int4/int2 are widened exactly to float32 there;
- a site relaying for a script in its own process (``relay_tensors``): a
  :class:`RelayedTFTensor` that is sent on as the same reference, still tagged as TF.

Keras weight lists (``model.get_weights()``) are lists of numpy arrays and need nothing here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ember.streaming import (
    FrameworkTensorDecomposer,
    RelayedFrameworkTensor,
    WidenedFrameworkTensor,
)
from ember_tf.dtypes import check_wire, numpy_value, tensor_from_wire, tensor_to_wire


class RelayedTFTensor(RelayedFrameworkTensor):
    """A streamed TF tensor passing through a relay (a site between its script's process
    and the server): the reference is sent on, the data stays with its owner."""

    from_wire = staticmethod(tensor_from_wire)


class WidenedTFTensor(WidenedFrameworkTensor):
    """A lazy reference to a tensor of a dtype numpy lacks (bfloat16, float8...): the server
    pulls its bits when it aggregates and gets them widened exactly to float32."""

    numpy_value = staticmethod(numpy_value)

    @property
    def tf_dtype(self) -> str:
        return self.framework_dtype


class TensorDecomposer(FrameworkTensorDecomposer):
    """``tf.Tensor`` (eager tensors, every dtype of the table, any device)."""

    what = "tf.Tensor"
    relayed = RelayedTFTensor
    widened = WidenedTFTensor
    from_wire = staticmethod(tensor_from_wire)
    numpy_value = staticmethod(numpy_value)

    def supported_type(self) -> type:
        return tf.Tensor  # type: ignore[no-any-return]

    def to_wire(self, obj: Any, /) -> tuple[str, np.ndarray[Any, Any]]:
        return tensor_to_wire(obj)  # looked up when called: a test may patch it

    def needs_widening(self, name: str, wire: np.dtype[Any]) -> bool:
        return check_wire(name, np.empty(0, wire))[2] is not None


class VariableDecomposer(TensorDecomposer):
    """``tf.Variable`` (``ResourceVariable``...): sent as its current value; decodes as a
    ``tf.Tensor``."""

    what = "tf.Variable"

    def supported_type(self) -> type:
        return tf.Variable  # type: ignore[no-any-return]


class KerasVariableDecomposer(TensorDecomposer):
    """``keras.Variable`` (Keras 3's backend variable): sent as its current value; decodes
    as a ``tf.Tensor``."""

    what = "keras.Variable"

    def supported_type(self) -> type:
        import keras  # only when a Keras variable is sent or received

        return keras.Variable  # type: ignore[no-any-return]


class RelayedTFTensorDecomposer(TensorDecomposer):
    """:class:`RelayedTFTensor`: sent on as the reference it holds; decodes as a tensor
    does."""

    match_subclasses = False

    def supported_type(self) -> type:
        return RelayedTFTensor
