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

from ember.fobs import Context, FOBSError
from ember.streaming import DeferredTensor
from ember_pt.convert import check_wire, numpy_value, tensor_from_wire, tensor_to_wire


class RelayedTensor:
    """A streamed torch tensor passing through a relay (a site between its script's process
    and the server): the reference is sent on, the data stays with its owner."""

    def __init__(self, dtype: str, ref: DeferredTensor) -> None:
        self.dtype = dtype
        self.ref = ref

    def __repr__(self) -> str:
        return f"RelayedTensor({self.dtype}, {self.ref!r})"

    def resolve_relayed(self, fetcher: Any) -> torch.Tensor:
        """Pull the data after all (a relay that needs it: a swarm aggregator)."""
        from ember.streaming import resolve_relayed

        return tensor_from_wire(self.dtype, resolve_relayed(self.ref, fetcher))


class WidenedTensor(DeferredTensor):
    """A lazy reference to a tensor of a dtype numpy lacks (bfloat16, float8): the server
    pulls its bits when it aggregates and gets them widened to float32."""

    def __init__(self, dtype: str, ref: DeferredTensor) -> None:
        self.torch_dtype = dtype
        self.ref = ref
        self.dtype = np.dtype(np.float32)
        self.shape = ref.shape

    def fetch(self, keep: bool = True, writable: bool = True) -> np.ndarray[Any, Any]:
        return numpy_value(self.torch_dtype, self.ref.fetch(keep=keep, writable=False))

    def release(self) -> None:
        self.ref.release()


class TensorDecomposer:
    """``torch.Tensor`` and its subclasses (``nn.Parameter``), any device, every dtype."""

    match_subclasses = True

    def supported_type(self) -> type:
        return torch.Tensor

    def decompose(self, obj: torch.Tensor, ctx: Context) -> Any:
        try:
            name, array = tensor_to_wire(obj)
        except TypeError as exc:
            raise FOBSError(str(exc)) from None
        return {"dtype": name, "array": array}

    def recompose(self, data: Any, ctx: Context) -> Any:
        if not isinstance(data, dict) or set(data) != {"dtype", "array"}:
            raise FOBSError("malformed torch.Tensor")
        name, array = data["dtype"], data["array"]
        if isinstance(array, DeferredTensor):
            if ctx.props.get("relay_tensors"):
                return RelayedTensor(name, array)
            try:
                _, _, view = check_wire(name, np.empty(0, array.dtype))
            except ValueError as exc:
                raise FOBSError(f"malformed torch.Tensor: {exc}") from None
            if ctx.props.get("lazy_tensors"):
                return array if view is None else WidenedTensor(name, array)
            array = array.fetch(keep=False)
        try:
            if ctx.props.get("lazy_tensors"):
                return numpy_value(name, array)
            return tensor_from_wire(name, array)
        except ValueError as exc:
            raise FOBSError(f"malformed torch.Tensor: {exc}") from None


class RelayedTensorDecomposer(TensorDecomposer):
    """:class:`RelayedTensor`: sent on as the reference it holds; decodes as a tensor does."""

    match_subclasses = False

    def supported_type(self) -> type:
        return RelayedTensor

    def decompose(self, obj: RelayedTensor, ctx: Context) -> Any:  # type: ignore[override]
        return {"dtype": obj.dtype, "array": obj.ref}
