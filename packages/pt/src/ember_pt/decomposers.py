"""FOBS decomposers for ``torch.Tensor``.

A tensor travels as its torch dtype name plus a numpy view of its bits (on the CPU), which
core's numpy decomposer carries: out of line, and offered for download (streamed) when
large, exactly like a numpy array. Where it lands decides what it becomes:

- a site or a script (the default): a CPU ``torch.Tensor``, bit-exact;
- the server (an endpoint decoding with ``lazy_tensors``): a numpy array, or core's lazy
  reference to one, because the server aggregates numpy; bfloat16/float8 are widened
  exactly to float32 there;
- a site relaying for a script in its own process (``relay_tensors``): a
  :class:`RelayedTensor` that is sent on as the same reference, still tagged as torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ember.streaming import (
    FrameworkTensorDecomposer,
    RelayedFrameworkTensor,
    WidenedFrameworkTensor,
)
from ember_pt.convert import check_wire, numpy_value, tensor_from_wire, tensor_to_wire


class RelayedTensor(RelayedFrameworkTensor):
    """A streamed torch tensor passing through a relay (a site between its script's process
    and the server): the reference is sent on, the data stays with its owner."""

    from_wire = staticmethod(tensor_from_wire)


class WidenedTensor(WidenedFrameworkTensor):
    """A lazy reference to a tensor of a dtype numpy lacks (bfloat16, float8): the server
    pulls its bits when it aggregates and gets them widened to float32."""

    numpy_value = staticmethod(numpy_value)

    @property
    def torch_dtype(self) -> str:
        return self.framework_dtype


class TensorDecomposer(FrameworkTensorDecomposer):
    """``torch.Tensor`` and its subclasses (``nn.Parameter``), any device, every dtype."""

    what = "torch.Tensor"
    relayed = RelayedTensor
    widened = WidenedTensor
    from_wire = staticmethod(tensor_from_wire)
    numpy_value = staticmethod(numpy_value)

    def supported_type(self) -> type:
        return torch.Tensor

    def to_wire(self, obj: torch.Tensor, /) -> tuple[str, np.ndarray[Any, Any]]:
        return tensor_to_wire(obj)  # looked up when called: a test may patch it

    def needs_widening(self, name: str, wire: np.dtype[Any]) -> bool:
        return check_wire(name, np.empty(0, wire))[2] is not None


class RelayedTensorDecomposer(TensorDecomposer):
    """:class:`RelayedTensor`: sent on as the reference it holds; decodes as a tensor does."""

    match_subclasses = False

    def supported_type(self) -> type:
        return RelayedTensor
