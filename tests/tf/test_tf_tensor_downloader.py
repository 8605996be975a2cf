"""ember_tf.tensor_downloader: TF tensors offered and pulled as safetensors streams, one at a
time, like numpy arrays and torch tensors; and a SimEnv job whose script sends large TF
tensors, streamed to the server and averaged there bit-exactly."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import ml_dtypes
import numpy as np
import pytest
import safetensors.tensorflow
import tensorflow as tf

from ember import SimEnv
from ember.recipes import NumpyFedAvgRecipe
from ember.streaming import Downloader, Fetcher, StreamingError
from ember.streaming import add_tensors as core_add_tensors
from ember.streaming.node import StreamNode
from ember_tf.dtypes import tensor_to_wire
from ember_tf.tensor_downloader import TFTensorAdapter, add_tensors, download_tensors

KIB = 1024
SCRIPTS = Path(__file__).parent / "scripts"


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


def bits(value: Any) -> bytes:
    return value.tobytes() if isinstance(value, np.ndarray) else tensor_to_wire(value)[1].tobytes()


def tensors() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((33, 65), dtype=np.float32)
    nan_bits = np.array([0x7FC1, 0xFFFF, 0x8000, 0x7F81], np.uint16)  # payloads and -0.0
    return {
        "bf16": tf.cast(tf.constant(w), tf.bfloat16),
        "bf16_specials": tf.constant(nan_bits.view(ml_dtypes.bfloat16)),
        "f16": tf.constant(rng.standard_normal(1000).astype(np.float16)),
        "f32": tf.constant(w[:17, :3]),
        "f8": tf.constant(rng.standard_normal(300).astype(ml_dtypes.float8_e4m3fn)),
        "f8_e5m2": tf.constant(rng.standard_normal(300).astype(ml_dtypes.float8_e5m2)),
        "i64": tf.range(-50, 50, dtype=tf.int64),
        "bool": tf.constant([True, False, True]),
        "transposed": tf.transpose(tf.constant(w)),
        "scalar": tf.constant(2.5, tf.float64),
        "variable": tf.Variable(w[:4, :4]),
        "keras": keras.Variable(np.ones((2, 3)), dtype="bfloat16"),
        "empty": tf.zeros((0, 3)),
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


def test_tensors_round_trip_bit_exactly_in_chunks() -> None:
    owner = owned(Downloader("site-1", 60))
    sent = tensors()
    ref = add_tensors(owner, sent)
    got = download_tensors("site-1", ref, per_request_timeout=5, fetcher=fetcher_for(owner))
    assert list(got) == list(sent)
    for name, value in sent.items():
        assert isinstance(got[name], tf.Tensor), name
        expected = tf.constant(value) if isinstance(value, np.ndarray) else value
        assert got[name].dtype == expected.dtype, name
        assert tuple(got[name].shape) == tuple(expected.shape), name
        assert bits(got[name]) == bits(expected), name  # NaN payloads included
    assert owner.pending() == 0  # its one receiver took everything: cleaned up


def read_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))  # type: ignore[no-any-return]


def test_each_stream_is_a_safetensors_file_with_the_real_dtype(tmp_path: Path) -> None:
    owner = owned(Downloader("site-1", 60))
    sent = {"w": tensors()["bf16"], "h": tensors()["f16"], "f8": tensors()["f8"]}
    ref = add_tensors(owner, sent, receivers=2)
    fetcher = fetcher_for(owner)
    for item, (name, code) in enumerate((("w", "BF16"), ("h", "F16"), ("f8", "F8_E4M3"))):
        path = fetcher.fetch_to_file("site-1", ref, str(item), tmp_path / f"{name}.safetensors")
        assert read_header(path)[name]["dtype"] == code
        assert path.read_bytes().endswith(bits(sent[name]))
        if code != "F8_E4M3":  # safetensors 0.8's TF loader lacks float8
            loaded = safetensors.tensorflow.load_file(str(path))
            assert loaded[name].dtype == sent[name].dtype
            assert bits(loaded[name]) == bits(sent[name])
    # a plain numpy receiver gets the bits of a dtype numpy lacks
    raw = fetcher.download_tensors("site-1", ref)
    assert raw["w"].dtype == np.uint16
    assert raw["w"].tobytes() == bits(sent["w"])
    assert raw["f8"].dtype == np.uint8


def test_the_adapter_is_found_through_the_plugin_hook() -> None:
    from ember.plugins.registry import get_registry

    entry = get_registry().get("tensor_adapter", "tensorflow")
    assert entry.plugin == "tf"
    owner = owned(Downloader("site-1", 60))
    # core's API takes TF tensors too: the adapter is found by the tensor's module
    ref = core_add_tensors(
        owner, {"t": tf.range(5), "v": tf.Variable([1.5]), "k": keras.Variable([2.0])}
    )
    got = fetcher_for(owner).download_tensors("site-1", ref)
    assert np.array_equal(got["t"], np.arange(5, dtype=np.int32))
    assert np.array_equal(got["v"], [1.5])
    assert np.array_equal(got["k"], [2.0])


def test_what_cannot_be_streamed_is_refused_clearly() -> None:
    owner = owned(Downloader("site-1", 60))
    with pytest.raises(StreamingError, match="complex64 tensors have no safetensors dtype"):
        add_tensors(owner, {"c": tf.zeros(3, dtype=tf.complex64)})
    fnuz = tf.constant(np.zeros(3, ml_dtypes.float8_e4m3fnuz))
    with pytest.raises(StreamingError, match="float8_e4m3fnuz tensors have no safetensors"):
        add_tensors(owner, {"f": fnuz})
    with pytest.raises(StreamingError, match=r"tf\.string tensors are not supported"):
        add_tensors(owner, {"s": tf.constant(["a"])})
    adapter = TFTensorAdapter()
    with pytest.raises(StreamingError, match="cannot make a TF tensor from a F8_E8M0 stream"):
        adapter.from_stream(np.zeros(2, np.uint8), "F8_E8M0")
    with pytest.raises(StreamingError, match="must travel as uint16"):
        adapter.from_stream(np.zeros(2, np.uint8), "BF16")


def run_big_job(tmp_path: Path, external: bool) -> Path:
    from tf_big_client import SHAPE

    recipe = NumpyFedAvgRecipe(
        name="tf-big",
        min_clients=2,
        num_rounds=2,
        model={
            "w16": np.zeros(SHAPE, np.float16),
            "wbf": np.zeros(SHAPE, np.float32),
            "var": np.zeros((512, SHAPE[1]), np.float32),
        },
        train_script=str(SCRIPTS / "tf_big_client.py"),
        launch_external_process=external,
    )
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    result = recipe.execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    return Path(result.get_result())


@pytest.mark.parametrize("external", [False, True], ids=["in-process", "external-process"])
def test_a_job_whose_script_sends_large_tf_tensors_streams_them_bit_exactly(
    tmp_path: Path, external: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tf_big_client import SHAPE, expected

    from ember.streaming.array_decomposers import StreamedNDArrayDecomposer

    streamed: list[tuple[str, tuple[int, ...]]] = []
    decompose = StreamedNDArrayDecomposer.decompose

    def spy(self: Any, obj: np.ndarray, ctx: Any) -> Any:
        data = decompose(self, obj, ctx)
        if isinstance(data, dict) and "ref" in data:
            streamed.append((obj.dtype.name, obj.shape))
        return data

    monkeypatch.setattr(StreamedNDArrayDecomposer, "decompose", spy)
    # the script checks the global model of round 0 it receives in round 1, bit for bit
    result = run_big_job(tmp_path, external)
    if not external:  # the sites' bfloat16 tensors went by download, as their uint16 bits
        assert streamed.count(("uint16", SHAPE)) == 2 * 2  # 2 sites x 2 rounds
    with np.load(result / "server" / "models" / "global_model.npz") as saved:
        got = dict(saved)
    for name, value in expected().items():
        # two identical results average to themselves; bfloat16 is widened exactly to float32
        assert got[name].dtype == value.dtype, name
        assert got[name].tobytes() == value.tobytes(), name
    assert got["wbf"].dtype == np.float32
    assert got["w16"].nbytes >= 1 << 20  # above streaming.min_tensor_bytes: streamed
