"""Pull-based streaming: large data moves one tensor (or chunk) at a time.

Every node has a download service (:class:`StreamNode`): the owner offers tensors, files or
objects (``add_tensors``, ``add_file``, ``add_object``) and sends only a reference; each
receiver pulls (``download_tensors``, ``iter_tensors``, ``download_file``,
``download_object``) in chunks of ``streaming.chunk_size`` with a CRC-32 per chunk, a
per-request timeout and retries. Arrays of at least ``streaming.min_tensor_bytes`` in any
message go this way transparently. :func:`push_file` sends logs and result files.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ember.streaming.adapters import get_adapter, iter_adapted, offer_tensors
from ember.streaming.downloader import Downloader, Transaction
from ember.streaming.errors import StreamingError
from ember.streaming.fetcher import Fetcher, Progress
from ember.streaming.framework_tensors import (
    SAFETENSORS_CODES,
    FrameworkTensorAdapter,
    FrameworkTensorDecomposer,
    RelayedFrameworkTensor,
    WidenedFrameworkTensor,
)
from ember.streaming.lazy import (
    DeferredTensor,
    LazyTensor,
    release_all,
    resolve_deferred,
    resolve_relayed,
)
from ember.streaming.node import StreamNode
from ember.streaming.push import FileReceiver, push_file

_node: contextvars.ContextVar[StreamNode | None] = contextvars.ContextVar(
    "ember_stream_node", default=None
)


def bind_node(node: StreamNode | None) -> None:
    """Make ``node`` the calling thread's (or script's) download service (runtimes do this)."""
    _node.set(node)


def current_node() -> StreamNode:
    """The calling thread's (or script's) download service (a site's, or the server's)."""
    node = _node.get()
    if node is None:
        raise StreamingError(
            "no download service in this thread: call this from a job "
            "(a training script or a controller)"
        )
    return node


def add_tensors(
    downloader: Downloader,
    tensors: Mapping[str, Any],
    receivers: int | None = 1,
    timeout: float | None = None,
) -> str:
    """Offer ``tensors`` (name -> numpy array, or a framework's tensor through its tensor
    adapter) for download; returns their ref id."""
    return offer_tensors(downloader, tensors, receivers, timeout)


def download_tensors(
    from_site: str,
    ref_id: str,
    per_request_timeout: float | None = None,
    progress: Progress | None = None,
    fetcher: Fetcher | None = None,
    tensor_format: str | None = None,
) -> dict[str, Any]:
    """Pull every tensor of ``ref_id`` from ``from_site``: numpy arrays, or with
    ``tensor_format`` (``"pytorch"``) that framework's tensors through its adapter."""
    fetcher = fetcher or current_node().fetcher
    if tensor_format is None:
        return fetcher.download_tensors(from_site, ref_id, progress, per_request_timeout)
    adapter = get_adapter(tensor_format)
    return dict(iter_adapted(fetcher, from_site, ref_id, adapter, progress, per_request_timeout))


def iter_tensors(
    from_site: str,
    ref_id: str,
    per_request_timeout: float | None = None,
    progress: Progress | None = None,
    fetcher: Fetcher | None = None,
) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """Pull the tensors of ``ref_id`` one at a time."""
    return (fetcher or current_node().fetcher).iter_tensors(
        from_site, ref_id, progress, per_request_timeout
    )


def download_file(
    from_site: str,
    ref_id: str,
    dest: str | Path,
    per_request_timeout: float | None = None,
    progress: Progress | None = None,
    fetcher: Fetcher | None = None,
) -> Path:
    """Pull an offered file to ``dest``."""
    return (fetcher or current_node().fetcher).download_file(
        from_site, ref_id, dest, progress, per_request_timeout
    )


def download_object(
    from_site: str,
    ref_id: str,
    per_request_timeout: float | None = None,
    fetcher: Fetcher | None = None,
) -> Any:
    """Pull an offered object."""
    return (fetcher or current_node().fetcher).download_object(
        from_site, ref_id, per_request_timeout
    )


__all__ = [
    "SAFETENSORS_CODES",
    "DeferredTensor",
    "Downloader",
    "Fetcher",
    "FileReceiver",
    "FrameworkTensorAdapter",
    "FrameworkTensorDecomposer",
    "LazyTensor",
    "Progress",
    "RelayedFrameworkTensor",
    "StreamNode",
    "StreamingError",
    "Transaction",
    "WidenedFrameworkTensor",
    "add_tensors",
    "bind_node",
    "current_node",
    "download_file",
    "download_object",
    "download_tensors",
    "iter_tensors",
    "push_file",
    "release_all",
    "resolve_deferred",
    "resolve_relayed",
]
