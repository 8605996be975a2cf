"""Tensor adapters: let the downloader offer and deliver a framework's tensors.

A framework package registers one per framework (``ember_tensor_adapters``, named after the
framework: ``pytorch``). It turns a tensor into the C-contiguous bits the downloader serves
as a single-tensor safetensors stream plus the safetensors dtype code (``BF16`` for a dtype
numpy lacks), and such a stream's array back into a tensor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import numpy as np

from ember.streaming.downloader import Downloader
from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import Fetcher, Progress


class TensorAdapter(Protocol):
    """One framework's tensors to and from safetensors streams."""

    def supports(self, value: Any) -> bool:
        """Whether ``value`` is a tensor of this framework."""
        ...

    def to_stream(self, value: Any) -> tuple[np.ndarray[Any, Any], str | None]:
        """The tensor's bits as a C-contiguous array (no copy where possible) and its
        safetensors dtype code (None: the array's own dtype)."""
        ...

    def from_stream(self, array: np.ndarray[Any, Any], code: str | None) -> Any:
        """A tensor from a pulled array (sharing its memory where possible)."""
        ...


def get_adapter(framework: str) -> TensorAdapter:
    """The adapter registered for ``framework``; an unknown one names what to install."""
    from ember.plugins.registry import get_registry

    target = get_registry().get("tensor_adapter", framework).item.load()
    return target() if isinstance(target, type) else target  # type: ignore[no-any-return]


def adapter_for(value: Any) -> TensorAdapter:
    """The adapter of the framework ``value`` comes from (by its module, then by asking)."""
    from ember.plugins.catalog import PROVIDERS
    from ember.plugins.registry import get_registry

    adapters = get_registry().items("tensor_adapter")
    root = type(value).__module__.split(".", 1)[0]
    for provider in PROVIDERS:
        if root in provider.modules and provider.framework in adapters:
            adapter = get_adapter(provider.framework)
            if adapter.supports(value):
                return adapter
    for name in adapters:
        adapter = get_adapter(name)
        if adapter.supports(value):
            return adapter
    raise StreamingError(
        f"cannot offer a {type(value).__module__}.{type(value).__name__} for download: it is "
        "not a numpy array and no installed tensor adapter supports it (installed: "
        f"{', '.join(adapters) or 'none'}); install the framework's ember package"
    )


def offer_tensors(
    downloader: Downloader,
    tensors: Mapping[str, Any],
    receivers: int | None = 1,
    timeout: float | None = None,
) -> str:
    """Offer numpy arrays and framework tensors (through their adapter) as one download."""
    tx = downloader.open(receivers, timeout)
    for name, value in tensors.items():
        if isinstance(value, np.ndarray):
            tx.add_tensor(name, value if value.flags.c_contiguous else value.copy(order="C"))
        else:
            array, code = adapter_for(value).to_stream(value)
            tx.add_tensor(name, array, code)
    return downloader.publish(tx)


def iter_adapted(
    fetcher: Fetcher,
    owner: str,
    ref_id: str,
    adapter: TensorAdapter,
    progress: Progress | None = None,
    timeout: float | None = None,
) -> Iterator[tuple[str, Any]]:
    """The offered tensors one at a time, as ``adapter``'s tensors."""
    for entry in fetcher.manifest(owner, ref_id, timeout):
        if entry.get("kind") != "tensor":
            raise StreamingError(f"item {entry.get('name')!r} of {ref_id} is not a tensor")
        name, array = fetcher.fetch_tensor(owner, ref_id, entry["item"], progress, timeout)
        yield name, adapter.from_stream(array, entry.get("dtype"))
