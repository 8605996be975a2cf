"""torch.Tensor through FOBS: every dtype bit-exact, on sites as tensors, on the server as numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from ember import fobs
from ember.config import Config, use_config
from ember.runtime.transport import InProcessTransport
from ember.streaming.lazy import DeferredTensor, LazyTensor
from ember_pt.convert import DTYPES
from ember_pt.decomposers import RelayedTensor, WidenedTensor

SERVER = fobs.Context({"lazy_tensors": True})


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of ``t``: equal bits, not equal values (NaN payloads, -0.0)."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...] = (5, 7)) -> torch.Tensor:
    """Random bits of ``dtype``: every pattern, NaNs and infinities included."""
    gen = torch.Generator().manual_seed(1)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    n = int(np.prod(shape)) * dtype.itemsize
    raw = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=gen)
    return raw.view(dtype).reshape(shape)


@pytest.mark.parametrize("name", sorted(DTYPES))
@pytest.mark.parametrize("writable", [False, True])
def test_every_dtype_round_trips_bit_exactly(name: str, writable: bool) -> None:
    t = random_tensor(getattr(torch, name))
    data = fobs.dumps({"t": t})
    back = fobs.loads(bytearray(data) if writable else data)["t"]
    assert isinstance(back, torch.Tensor)
    assert back.dtype == t.dtype
    assert back.shape == t.shape
    assert back.device.type == "cpu"
    assert torch.equal(bits(back), bits(t))
    back.view(torch.uint8).zero_()  # writable, even when decoded from read-only bytes


def test_half_precision_special_values_keep_their_bits() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        t = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-8], dtype=dtype)
        t = torch.cat([t, random_tensor(dtype, (4096,))])
        back = fobs.loads(fobs.dumps(t))
        assert back.dtype == dtype
        assert torch.equal(bits(back), bits(t))


def test_parameters_views_scalars_and_empty_tensors() -> None:
    param = torch.nn.Parameter(torch.randn(3, 4))
    values = {
        "param": param,
        "transposed": param.t(),
        "strided": torch.arange(20.0)[::3],
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.empty(0, 3, dtype=torch.bfloat16),
        "conj": torch.randn(3, dtype=torch.complex64).conj(),
    }
    back = fobs.loads(fobs.dumps(values))
    for key, value in values.items():
        got = back[key]
        assert type(got) is torch.Tensor
        assert not got.requires_grad
        assert torch.equal(got, value.detach().resolve_conj()), key


def test_the_server_decodes_numpy_and_widens_bfloat16_exactly() -> None:
    bf16 = random_tensor(torch.bfloat16, (64,))
    half = torch.ones(3, dtype=torch.float16)
    got = fobs.loads(fobs.dumps({"h": half, "b": bf16}), ctx=SERVER)
    assert isinstance(got["h"], np.ndarray)
    assert got["h"].dtype == np.float16
    assert got["b"].dtype == np.float32
    np.testing.assert_array_equal(got["b"], bf16.float().numpy())  # NaNs compare equal here


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"dtype": "object", "array": np.zeros(2)}, "unknown torch dtype"),
        ({"dtype": "float32", "array": np.zeros(2)}, "must travel as float32, got float64"),
        ({"dtype": "bfloat16", "array": np.zeros(2, np.float16)}, "must travel as uint16"),
        ({"dtype": "float32", "array": [1.0]}, "got list"),
        ({"dtype": "float32"}, "malformed torch.Tensor"),
    ],
)
def test_malformed_tensors_are_fobs_errors(data: dict[str, Any], match: str) -> None:
    from ember_pt.decomposers import TensorDecomposer

    with pytest.raises(fobs.FOBSError, match=match):
        TensorDecomposer().recompose(data, fobs.Context())


def test_tensors_without_plain_data_are_refused() -> None:
    with pytest.raises(fobs.FOBSError, match="to_dense"):
        fobs.dumps(torch.eye(3).to_sparse())
    with pytest.raises(fobs.FOBSError, match="meta device"):
        fobs.dumps(torch.empty(3, device="meta"))


def _transport() -> InProcessTransport:
    transport = InProcessTransport()
    with use_config(Config({"streaming.min_tensor_bytes": 1024})):
        transport.add_endpoint("server", lazy_tensors=True)
        transport.add_endpoint("site-1")
        transport.add_endpoint("site-2", relay_tensors=True)
    return transport


def test_large_tensors_are_streamed_to_the_server_and_back_bit_exactly() -> None:
    transport = _transport()
    received: list[Any] = []

    def echo(sender: str, payload: Any) -> Any:
        received.append(dict(payload))
        return {k: v.fetch() if isinstance(v, DeferredTensor) else v for k, v in payload.items()}

    transport._endpoints["server"].register_handler("echo", echo)
    half, brain = random_tensor(torch.float16, (64, 64)), random_tensor(torch.bfloat16, (64, 64))
    small = torch.arange(4, dtype=torch.bfloat16)
    reply = transport.request("site-1", "server", "echo", {"h": half, "b": brain, "s": small})
    assert isinstance(received[0]["h"], LazyTensor)  # streamed: the server holds a reference
    assert isinstance(received[0]["b"], WidenedTensor)
    assert isinstance(received[0]["s"], np.ndarray)
    assert received[0]["s"].dtype == np.float32
    assert reply["h"].dtype == np.float16
    assert np.array_equal(reply["h"].view(np.uint16), half.view(torch.int16).numpy().view("u2"))
    np.testing.assert_array_equal(reply["b"], brain.float().numpy())
    transport.close()


def test_site_to_site_keeps_torch_tensors_and_relays_keep_references() -> None:
    transport = _transport()
    seen: list[Any] = []
    transport._endpoints["site-2"].register_handler("put", lambda s, p: seen.append(p))
    brain = random_tensor(torch.bfloat16, (64, 64))
    transport.request("site-1", "site-2", "put", {"b": brain})
    relayed = seen[0]["b"]
    assert isinstance(relayed, RelayedTensor)
    assert relayed.dtype == "bfloat16"
    # sent on by the relay: the next receiver pulls from the owner and gets the tensor
    seen.clear()
    transport._endpoints["site-1"].register_handler("put", lambda s, p: seen.append(p))
    transport.request("site-2", "site-1", "put", {"b": relayed})
    assert isinstance(seen[0]["b"], torch.Tensor)
    assert torch.equal(bits(seen[0]["b"]), bits(brain))
    transport.close()
