"""ember_pt.tensor_downloader: state_dicts offered and pulled as safetensors streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from ember.streaming import Downloader, Fetcher, StreamingError
from ember.streaming import add_tensors as core_add_tensors
from ember.streaming.node import StreamNode
from ember_pt.convert import tensor_to_wire
from ember_pt.tensor_downloader import TorchTensorAdapter, add_tensors, download_tensors

KIB = 1024


def fetcher_for(owner: Downloader, chunk: int = 4 * KIB) -> Fetcher:
    node = StreamNode.__new__(StreamNode)
    node.downloader = owner
    handlers = {
        "stream.manifest": node._manifest,
        "stream.chunk": node._chunk,
        "stream.done": node._done,
    }

    def call(target: str, topic: str, payload: Any, timeout: float) -> Any:
        return handlers[topic]("receiver", payload)

    return Fetcher("receiver", call, chunk, 5.0, 2)


def state_dict() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {
        "bf16": torch.randn(33, 65, generator=gen).to(torch.bfloat16),
        "f16": torch.randn(1000, generator=gen).to(torch.float16),
        "f32": torch.randn(17, 3, generator=gen),
        "f8": torch.randn(300, generator=gen).to(torch.float8_e4m3fn),
        "i64": torch.arange(-50, 50),
        "bool": torch.tensor([True, False, True]),
        "noncontig": torch.randn(20, 30, generator=gen).t(),
        "param": torch.nn.Parameter(torch.ones(4)),
        "empty": torch.zeros(0, 3),
        "numpy": np.arange(6.0).reshape(2, 3),  # arrays may sit beside tensors
    }


_OWNERS: list[Downloader] = []


def owned(downloader: Downloader) -> Downloader:
    """``downloader``, closed when the test ends (its transactions would expire later)."""
    _OWNERS.append(downloader)
    return downloader


@pytest.fixture(autouse=True)
def _close_owners() -> Iterator[None]:
    yield
    while _OWNERS:
        _OWNERS.pop().close()


def test_state_dict_round_trips_bit_exactly_in_chunks() -> None:
    owner = owned(Downloader("site-1", 60))
    sd = state_dict()
    ref = add_tensors(owner, sd)
    got = download_tensors("site-1", ref, per_request_timeout=5, fetcher=fetcher_for(owner))
    assert list(got) == list(sd)
    for name, value in sd.items():
        expected = torch.from_numpy(value) if isinstance(value, np.ndarray) else value.detach()
        assert isinstance(got[name], torch.Tensor)
        assert got[name].dtype == expected.dtype, name
        assert got[name].shape == expected.shape, name
        # bit-exact, NaN payloads included: compare the raw bytes
        assert tensor_to_wire(got[name])[1].tobytes() == tensor_to_wire(expected)[1].tobytes()
    assert owner.pending() == 0  # its one receiver took everything: cleaned up


def test_each_stream_is_a_safetensors_file_with_the_real_dtype(tmp_path: Path) -> None:
    owner = owned(Downloader("site-1", 60))
    sd = {"w": state_dict()["bf16"], "h": state_dict()["f16"]}
    ref = add_tensors(owner, sd, receivers=2)
    fetcher = fetcher_for(owner)
    for item, name in (("0", "w"), ("1", "h")):
        path = fetcher.fetch_to_file("site-1", ref, item, tmp_path / f"{name}.safetensors")
        loaded = safetensors.torch.load_file(str(path))
        assert loaded[name].dtype == sd[name].dtype
        assert torch.equal(loaded[name], sd[name])
    # a plain numpy receiver gets the bits of a dtype numpy lacks
    raw = fetcher.download_tensors("site-1", ref)
    assert raw["w"].dtype == np.uint16
    assert np.array_equal(raw["w"], sd["w"].view(torch.int16).numpy().view(np.uint16))


def test_the_adapter_is_found_through_the_plugin_hook() -> None:
    from ember.plugins.registry import get_registry

    entry = get_registry().get("tensor_adapter", "pytorch")
    assert entry.plugin == "pt"
    owner = owned(Downloader("site-1", 60))
    ref = core_add_tensors(owner, {"t": torch.arange(5)})  # core's API takes tensors too
    got = fetcher_for(owner).download_tensors("site-1", ref)
    assert np.array_equal(got["t"], np.arange(5))


def test_what_cannot_be_streamed_is_refused_clearly() -> None:
    owner = owned(Downloader("site-1", 60))
    with pytest.raises(StreamingError, match="complex64 tensors have no safetensors dtype"):
        add_tensors(owner, {"c": torch.zeros(3, dtype=torch.complex64)})
    with pytest.raises(StreamingError, match="no installed tensor adapter supports it"):
        add_tensors(owner, {"x": [1, 2, 3]})


def test_a_zero_dimensional_tensor_keeps_its_shape_through_the_adapter() -> None:
    adapter = TorchTensorAdapter()
    bits, code = adapter.to_stream(torch.tensor(2.5))
    assert bits.shape == ()
    assert code == "F32"
    back = adapter.from_stream(bits.copy(), code)
    assert back.shape == ()
    assert back.item() == 2.5
