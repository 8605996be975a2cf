"""Streaming TF tensors with the download service: one safetensors stream per tensor.

The low-level API for code that moves tensors itself (messages do it transparently):

    ref_id = add_tensors(downloader, {w.path: w for w in model.weights})  # the owner
    tensors = download_tensors("site-1", ref_id, per_request_timeout=30)  # a receiver

Each tensor (a ``tf.Tensor``, a ``tf.Variable``'s or a Keras variable's current value) is
served from its host memory as a single-tensor safetensors stream with its real dtype
(``BF16``, ``F8_E4M3``...), so a receiver may also write it to a ``.safetensors`` file
(``safetensors.tensorflow.load_file`` reads it back). Receivers get eager ``tf.Tensor``
objects, bit-exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from ember.streaming import (
    SAFETENSORS_CODES,
    Downloader,
    FrameworkTensorAdapter,
)
from ember.streaming import add_tensors as _add_tensors
from ember_tf.dtypes import DTYPES, is_keras_variable, tensor_from_wire, tensor_to_wire

__all__ = ["SAFETENSORS_CODES", "TFTensorAdapter", "add_tensors", "download_tensors"]


class TFTensorAdapter(FrameworkTensorAdapter[Any]):
    """The ``tensorflow`` tensor adapter (registered by ember-tf's plugin). Complex, the fnuz
    float8s, float4, int4 and int2 have no safetensors dtype: they travel in messages only."""

    tensor_format = "tensorflow"
    framework = "TensorFlow"
    tensor = "TF tensor"
    dtypes = DTYPES
    to_wire = staticmethod(tensor_to_wire)
    from_wire = staticmethod(tensor_from_wire)

    def supports(self, value: Any) -> bool:
        return isinstance(value, tf.Tensor | tf.Variable) or is_keras_variable(value)


def add_tensors(
    downloader: Downloader,
    tensors: Mapping[str, Any],
    receivers: int | None = 1,
    timeout: float | None = None,
) -> str:
    """Offer TF tensors, variables (their current value) or numpy arrays for download;
    returns the ref id.

    Eager tensors are served from their own (immutable) memory, numpy arrays too: do not
    change an array in place until every receiver has pulled it (or the transaction
    expired); a variable's value is read once, here."""
    return _add_tensors(downloader, tensors, receivers, timeout)


#: ``download_tensors(from_site, ref_id, per_request_timeout=None, progress=None,
#: fetcher=None)``: every tensor of ``ref_id`` as eager ``tf.Tensor`` objects, in offered order
download_tensors = TFTensorAdapter().download
