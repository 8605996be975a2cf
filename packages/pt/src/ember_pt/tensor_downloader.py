"""Streaming torch tensors with the download service: one safetensors stream per tensor.

The low-level API for code that moves a state_dict itself (messages do it transparently):

    ref_id = add_tensors(downloader, model.state_dict())          # the owner
    state_dict = download_tensors("site-1", ref_id, per_request_timeout=30)  # a receiver

Each tensor is served straight from its CPU memory (a GPU tensor is copied to the CPU once)
as a single-tensor safetensors stream with its real dtype (``BF16``, ``F8_E4M3``...), so a
receiver may also write it to a ``.safetensors`` file that ``safetensors.torch`` loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ember.streaming import (
    SAFETENSORS_CODES,
    Downloader,
    FrameworkTensorAdapter,
)
from ember.streaming import add_tensors as _add_tensors
from ember_pt.convert import DTYPES, tensor_from_wire, tensor_to_wire

__all__ = ["SAFETENSORS_CODES", "TorchTensorAdapter", "add_tensors", "download_tensors"]


class TorchTensorAdapter(FrameworkTensorAdapter[torch.Tensor]):
    """The ``pytorch`` tensor adapter (registered by ember-pt's plugin)."""

    tensor_format = "pytorch"
    framework = "torch"
    tensor = "torch tensor"
    dtypes = DTYPES
    wrap_errors = False  # a tensor it cannot send raises TypeError, as it always has
    to_wire = staticmethod(tensor_to_wire)
    from_wire = staticmethod(tensor_from_wire)

    def supports(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor)


def add_tensors(
    downloader: Downloader,
    state_dict: Mapping[str, Any],
    receivers: int | None = 1,
    timeout: float | None = None,
) -> str:
    """Offer a state_dict's tensors (or numpy arrays) for download; returns the ref id.

    The tensors are served from their own memory: do not change them in place until every
    receiver has pulled them (or the transaction expired)."""
    return _add_tensors(downloader, state_dict, receivers, timeout)


#: ``download_tensors(from_site, ref_id, per_request_timeout=None, progress=None,
#: fetcher=None)``: every tensor of ``ref_id`` as CPU tensors, in offered order
download_tensors = TorchTensorAdapter().download
