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

from ember.fobs import Context, FOBSError
from ember.streaming import DeferredTensor
from ember_tf.dtypes import check_wire, numpy_value, tensor_from_wire, tensor_to_wire


class RelayedTFTensor:
    """A streamed TF tensor passing through a relay (a site between its script's process
    and the server): the reference is sent on, the data stays with its owner."""

    def __init__(self, dtype: str, ref: DeferredTensor) -> None:
        self.dtype = dtype
        self.ref = ref

    def __repr__(self) -> str:
        return f"RelayedTFTensor({self.dtype}, {self.ref!r})"

    def resolve_relayed(self, fetcher: Any) -> Any:
        """Pull the data after all (a relay that needs it: a swarm aggregator)."""
        from ember.streaming import resolve_relayed

        return tensor_from_wire(self.dtype, resolve_relayed(self.ref, fetcher))


class WidenedTFTensor(DeferredTensor):
    """A lazy reference to a tensor of a dtype numpy lacks (bfloat16, float8...): the server
    pulls its bits when it aggregates and gets them widened exactly to float32."""

    def __init__(self, dtype: str, ref: DeferredTensor) -> None:
        self.tf_dtype = dtype
        self.ref = ref
        self.dtype = np.dtype(np.float32)
        self.shape = ref.shape

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        return numpy_value(self.tf_dtype, self.ref.fetch(keep=keep, writable=False))

    def release(self) -> None:
        self.ref.release()


class TensorDecomposer:
    """``tf.Tensor`` (eager tensors, every dtype of the table, any device)."""

    match_subclasses = True
    what = "tf.Tensor"

    def supported_type(self) -> type:
        return tf.Tensor  # type: ignore[no-any-return]

    def decompose(self, obj: Any, ctx: Context) -> Any:
        try:
            name, array = tensor_to_wire(obj)
        except TypeError as exc:
            raise FOBSError(str(exc)) from None
        return {"dtype": name, "array": array}

    def recompose(self, data: Any, ctx: Context) -> Any:
        if not isinstance(data, dict) or set(data) != {"dtype", "array"}:
            raise FOBSError(f"malformed {self.what}")
        name, array = data["dtype"], data["array"]
        if isinstance(array, DeferredTensor):
            if ctx.props.get("relay_tensors"):
                return RelayedTFTensor(name, array)
            try:
                _, _, view = check_wire(name, np.empty(0, array.dtype))
            except ValueError as exc:
                raise FOBSError(f"malformed {self.what}: {exc}") from None
            if ctx.props.get("lazy_tensors"):
                return array if view is None else WidenedTFTensor(name, array)
            array = array.fetch(keep=False)
        try:
            if ctx.props.get("lazy_tensors"):
                return numpy_value(name, array)
            return tensor_from_wire(name, array)
        except ValueError as exc:
            raise FOBSError(f"malformed {self.what}: {exc}") from None


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

    def decompose(self, obj: Any, ctx: Context) -> Any:
        return {"dtype": obj.dtype, "array": obj.ref}
