"""tf.Tensor, tf.Variable and Keras variables through FOBS: every dtype of the table
bit-exact, on sites as tensors, on the server as numpy, through relays as references."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import keras
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from ember import fobs
from ember.config import Config, use_config
from ember.runtime.transport import InProcessTransport
from ember.streaming.lazy import DeferredTensor, LazyTensor
from ember_tf.decomposers import RelayedTFTensor, TensorDecomposer, WidenedTFTensor
from ember_tf.dtypes import DTYPES, numpy_value, tensor_to_wire

SERVER = fobs.Context({"lazy_tensors": True})
SUB_BYTE = {"int4": 0x0F, "uint4": 0x0F, "float4_e2m1fn": 0x0F, "int2": 0x03, "uint2": 0x03}


def bits(t: Any) -> bytes:
    """The raw bytes of a tensor or array: equal bits, not equal values (NaN payloads, -0.0)."""
    return tensor_to_wire(t)[1].tobytes() if not isinstance(t, np.ndarray) else t.tobytes()


def random_array(name: str, shape: tuple[int, ...] = (5, 7)) -> np.ndarray:
    """Random bits of TF dtype ``name`` as a numpy / ml_dtypes array: every pattern, NaNs
    and infinities included (4- and 2-bit dtypes: every pattern of their bits)."""
    _, wire, value = DTYPES[name]
    rng = np.random.default_rng(1)
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    raw = rng.integers(0, 256, int(np.prod(shape)) * wire.itemsize, dtype=np.uint8)
    if name in SUB_BYTE:
        raw &= SUB_BYTE[name]
    return raw.view(value if value is not None else np.dtype(name)).reshape(shape)


def random_tensor(name: str, shape: tuple[int, ...] = (5, 7)) -> Any:
    return tf.constant(random_array(name, shape))


def ml_dtypes_tf(name: str) -> Any:
    """The tf.DType of a dtype TF exports only internally (the float8 family)."""
    return DTYPES[name][0]


def from_bits(dtype: Any, pattern: list[int]) -> Any:
    """A tensor of ``dtype`` holding exactly these bit patterns."""
    wire = np.uint16 if dtype.size == 2 else np.uint8
    return tf.constant(np.array(pattern, wire).view(dtype.as_numpy_dtype))


def test_the_table_has_every_numeric_dtype_and_nothing_else() -> None:
    assert {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e5m2",
        "int4",
        "uint4",
    } <= set(DTYPES)
    assert not {"string", "qint8", "quint8", "qint32", "resource", "variant"} & set(DTYPES)
    for name, (tf_dtype, wire, value) in DTYPES.items():
        assert tf_dtype.name == name
        assert wire.byteorder in ("=", "<", "|")  # little-endian on the wire
        if value is not None:  # a dtype numpy lacks: an unsigned view of the same size
            assert wire.kind == "u"
            assert wire.itemsize == value.itemsize == tf_dtype.size


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_dtype_round_trips_bit_exactly(name: str) -> None:
    t = random_tensor(name)
    back = fobs.loads(fobs.dumps({"t": t}))["t"]
    assert isinstance(back, tf.Tensor)
    assert back.dtype == t.dtype
    assert back.shape == t.shape
    assert bits(back) == bits(t)
    assert bits(back) == random_array(name).tobytes()


def test_half_precision_special_values_keep_their_bits() -> None:
    specials = {
        # 0, -0, inf, -inf, quiet NaN, NaN with a payload, signalling NaN, negative NaN,
        # the smallest subnormal, the largest finite
        tf.float16: [
            0x0000,
            0x8000,
            0x7C00,
            0xFC00,
            0x7E00,
            0x7E01,
            0x7C01,
            0xFFFF,
            0x0001,
            0x7BFF,
        ],
        tf.bfloat16: [
            0x0000,
            0x8000,
            0x7F80,
            0xFF80,
            0x7FC0,
            0x7FC1,
            0x7F81,
            0xFFFF,
            0x0001,
            0x7F7F,
        ],
        ml_dtypes_tf("float8_e4m3fn"): [0x00, 0x80, 0x7F, 0xFF, 0x01, 0x7E],
        ml_dtypes_tf("float8_e5m2"): [0x00, 0x80, 0x7C, 0xFC, 0x7D, 0xFF, 0x01],
    }
    for dtype, pattern in specials.items():
        t = tf.concat([from_bits(dtype, pattern), random_tensor(dtype.name, (4096,))], axis=0)
        back = fobs.loads(fobs.dumps(t))
        assert back.dtype == dtype
        assert bits(back) == bits(t), dtype.name
    # widened for the server: bfloat16 is the top half of a float32, NaN payloads included
    bf16 = np.array(specials[tf.bfloat16], np.uint16)
    widened = fobs.loads(fobs.dumps(from_bits(tf.bfloat16, list(bf16))), ctx=SERVER)
    assert widened.dtype == np.float32
    assert np.array_equal(widened.view(np.uint32), bf16.astype(np.uint32) << 16)


def test_scalars_empty_transposed_and_sliced_tensors() -> None:
    x = tf.reshape(tf.range(20.0), (4, 5))
    values = {
        "scalar": tf.constant(7, dtype=tf.int64),
        "scalar_bf16": tf.constant(-0.0, dtype=tf.bfloat16),
        "empty": tf.zeros((0, 3), dtype=tf.bfloat16),
        "empty_f8": tf.constant(np.zeros((2, 0), ml_dtypes.float8_e4m3fn)),
        "transposed": tf.transpose(x),
        "strided": tf.range(20.0)[::3],
        "column": x[:, 1],
        "complex": tf.complex(x, -x),
    }
    back = fobs.loads(fobs.dumps(values))
    for key, value in values.items():
        got = back[key]
        assert isinstance(got, tf.Tensor), key
        assert got.dtype == value.dtype, key
        assert got.shape == value.shape, key
        assert bits(got) == bits(value), key
    assert back["scalar"].numpy() == 7
    assert np.array_equal(back["transposed"].numpy(), np.arange(20.0).reshape(4, 5).T)


def test_variables_decode_as_tensors_of_the_value_they_had_when_sent() -> None:
    var = tf.Variable(tf.cast(tf.range(6.0), tf.bfloat16), name="v")
    kvar = keras.Variable(np.arange(4.0).reshape(2, 2), dtype="float16", name="k")
    data = fobs.dumps({"var": var, "kvar": kvar})
    var.assign_add(tf.ones(6, tf.bfloat16))  # after sending: not in the message
    kvar.assign(np.zeros((2, 2)))
    back = fobs.loads(data)
    assert type(back["var"]) is type(tf.constant(0.0))  # an eager tensor, not a variable
    assert back["var"].dtype == tf.bfloat16
    assert np.array_equal(back["var"].numpy().astype(np.float32), np.arange(6.0))
    assert isinstance(back["kvar"], tf.Tensor)
    assert back["kvar"].dtype == tf.float16
    assert np.array_equal(back["kvar"].numpy(), np.arange(4.0).reshape(2, 2))
    # received values load straight back into variables
    var.assign(back["var"])
    kvar.assign(back["kvar"])
    assert np.array_equal(kvar.numpy(), np.arange(4.0).reshape(2, 2))


def test_a_keras_models_weights_and_variables_round_trip() -> None:
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2)]
    )
    weights = model.get_weights()  # plain numpy arrays: core's numpy decomposer carries them
    back = fobs.loads(fobs.dumps({"weights": weights, "variables": model.weights}))
    assert all(type(w) is np.ndarray for w in back["weights"])
    assert [w.dtype for w in back["weights"]] == [w.dtype for w in weights]
    assert all(np.array_equal(a, b) for a, b in zip(back["weights"], weights, strict=True))
    assert all(isinstance(v, tf.Tensor) for v in back["variables"])
    assert all(bits(v) == w.tobytes() for v, w in zip(back["variables"], weights, strict=True))
    fresh = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2)]
    )
    fresh.set_weights(back["weights"])
    fresh.set_weights([v.numpy() for v in back["variables"]])
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), weights, strict=True))


def test_a_bfloat16_keras_weight_list_keeps_its_dtype_and_bits() -> None:
    layer = keras.layers.Dense(2, dtype="bfloat16", kernel_initializer="random_normal")
    layer.build((None, 3))
    weights = layer.get_weights()  # ml_dtypes arrays
    back = fobs.loads(fobs.dumps(weights))
    assert back[0].dtype == ml_dtypes.bfloat16
    assert back[0].tobytes() == weights[0].tobytes()


def test_the_server_decodes_numpy_and_widens_dtypes_numpy_lacks_exactly() -> None:
    values = {
        "h": tf.ones(3, dtype=tf.float16),
        "b": random_tensor("bfloat16", (64,)),
        "f8": random_tensor("float8_e4m3fn", (64,)),
        "i4": tf.constant(np.arange(-8, 8).astype(ml_dtypes.int4)),
        "u4": tf.constant(np.arange(16).astype(ml_dtypes.uint4)),
        "var": tf.Variable(tf.zeros(2, tf.bfloat16)),
    }
    got = fobs.loads(fobs.dumps(values), ctx=SERVER)
    assert all(type(v) is np.ndarray for v in got.values())
    assert got["h"].dtype == np.float16
    for key in ("b", "f8", "i4", "u4", "var"):
        assert got[key].dtype == np.float32, key
    np.testing.assert_array_equal(got["b"], values["b"].numpy().astype(np.float32))  # NaN == NaN
    np.testing.assert_array_equal(got["f8"], values["f8"].numpy().astype(np.float32))
    np.testing.assert_array_equal(got["i4"], np.arange(-8.0, 8.0))
    np.testing.assert_array_equal(got["u4"], np.arange(16.0))
    for name in DTYPES:  # every dtype of the table has a numpy value on the server
        assert numpy_value(name, tensor_to_wire(random_tensor(name))[1]).shape == (5, 7)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"dtype": "object", "array": np.zeros(2)}, "unknown TensorFlow dtype 'object'"),
        ({"dtype": "string", "array": np.zeros(2)}, "unknown TensorFlow dtype 'string'"),
        ({"dtype": "qint8", "array": np.zeros(2, np.int8)}, "unknown TensorFlow dtype 'qint8'"),
        ({"dtype": 7, "array": np.zeros(2)}, "unknown TensorFlow dtype '7'"),
        ({"dtype": "float32", "array": np.zeros(2)}, "must travel as float32, got float64"),
        ({"dtype": "bfloat16", "array": np.zeros(2, np.float16)}, "must travel as uint16"),
        ({"dtype": "float8_e5m2", "array": np.zeros(2, np.int8)}, "must travel as uint8"),
        ({"dtype": "float32", "array": [1.0]}, "got list"),
        ({"dtype": "float32"}, "malformed tf.Tensor"),
        ([1, 2], "malformed tf.Tensor"),
    ],
)
@pytest.mark.parametrize("server", [False, True])
def test_malformed_tensors_are_fobs_errors(data: Any, match: str, server: bool) -> None:
    with pytest.raises(fobs.FOBSError, match=match):
        TensorDecomposer().recompose(data, SERVER if server else fobs.Context())


def test_an_unknown_dtype_name_off_the_wire_is_a_fobs_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ember_tf.decomposers

    def forged(t: Any) -> tuple[str, np.ndarray]:
        return "float128", np.zeros(2, np.uint8)

    monkeypatch.setattr(ember_tf.decomposers, "tensor_to_wire", forged)
    data = fobs.dumps({"t": tf.zeros(2)})  # a sender with a dtype this receiver lacks
    monkeypatch.undo()
    for ctx in (fobs.Context(), SERVER):
        with pytest.raises(fobs.FOBSError, match="unknown TensorFlow dtype 'float128'"):
            fobs.loads(data, ctx=ctx)


def test_what_cannot_be_sent_is_refused_clearly() -> None:
    with pytest.raises(fobs.FOBSError, match=r"tf.string tensors are not supported.*tolist"):
        fobs.dumps(tf.constant([b"a", b"bc"]))
    with pytest.raises(fobs.FOBSError, match=r"quantized tensors \(qint8\).*dequantize"):
        fobs.dumps(tf.bitcast(tf.constant(np.int8([1, 2])), tf.qint8))
    with pytest.raises(fobs.FOBSError, match="string"):
        fobs.dumps(tf.Variable(["x"]))
    with pytest.raises(fobs.FOBSError, match="cannot serialize type"):
        fobs.dumps(tf.ragged.constant([[1], [2, 3]]))

    errors: list[str] = []

    @tf.function
    def traced(x: Any) -> Any:
        try:
            fobs.dumps(x)
        except fobs.FOBSError as exc:
            errors.append(str(exc))
        return x

    traced(tf.ones(2))
    assert len(errors) == 1
    assert "symbolic tensor" in errors[0]


def test_the_plugin_names_are_the_wire_names_of_the_real_classes() -> None:
    from ember.fobs.table import get_table
    from ember.plugins.registry import get_registry
    from ember_tf import plugin

    entries = plugin.ember_fobs_decomposers()
    registered = get_registry().items("decomposer")
    for entry in entries:
        assert registered[entry.name].plugin == "tf"
        dec = registered[entry.name].item.load()()
        assert fobs.type_name(dec.supported_type()) == entry.name
    table = get_table()
    samples = {
        "tensorflow.python.framework.tensor.Tensor": tf.constant(1.0),
        "tensorflow.python.ops.variables.Variable": tf.Variable(1.0),
        "keras.src.backend.Variable": keras.Variable(1.0),
    }
    for name, value in samples.items():
        assert table.for_type(type(value))[0] == name
    assert {e.name for e in entries} == {*samples, "ember_tf.decomposers.RelayedTFTensor"}


def test_listing_the_plugins_registrations_imports_no_tensorflow() -> None:
    code = (
        "import json, sys\n"
        "from ember_tf import plugin\n"
        "names = [e.name for e in plugin.ember_fobs_decomposers()]\n"
        "names += [e.name for e in plugin.ember_tensor_adapters()]\n"
        "from ember.plugins import get_registry\n"
        "reg = get_registry()\n"
        "names += sorted(reg.items('decomposer'))\n"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'ml_dtypes') if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []


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
    half, brain = random_tensor("float16", (64, 64)), random_tensor("bfloat16", (64, 64))
    var = tf.Variable(random_tensor("float32", (32, 32)))
    small = tf.range(4, dtype=tf.bfloat16)
    payload = {"h": half, "b": brain, "v": var, "s": small}
    reply = transport.request("site-1", "server", "echo", payload)
    assert isinstance(received[0]["h"], LazyTensor)  # streamed: the server holds a reference
    assert isinstance(received[0]["v"], LazyTensor)
    assert isinstance(received[0]["b"], WidenedTFTensor)
    assert received[0]["b"].shape == (64, 64)
    assert isinstance(received[0]["s"], np.ndarray)  # small: inline
    assert received[0]["s"].dtype == np.float32
    assert reply["h"].dtype == np.float16
    assert reply["h"].tobytes() == bits(half)
    assert reply["v"].tobytes() == bits(var)
    assert np.array_equal(
        reply["b"].view(np.uint32), tensor_to_wire(brain)[1].astype(np.uint32) << 16
    )
    transport.close()


def test_site_to_site_keeps_tf_tensors_and_relays_keep_references() -> None:
    transport = _transport()
    seen: list[Any] = []
    transport._endpoints["site-2"].register_handler("put", lambda s, p: seen.append(p))
    brain = random_tensor("bfloat16", (64, 64))
    f8 = random_tensor("float8_e5m2fnuz", (64, 64))
    transport.request("site-1", "site-2", "put", {"b": brain, "f8": f8})
    for key, dtype in (("b", "bfloat16"), ("f8", "float8_e5m2fnuz")):
        assert isinstance(seen[0][key], RelayedTFTensor)
        assert seen[0][key].dtype == dtype
    # sent on by the relay: the next receiver pulls from the owner and gets the tensor
    relayed = seen[0]
    seen.clear()
    transport._endpoints["site-1"].register_handler("put", lambda s, p: seen.append(p))
    transport.request("site-2", "site-1", "put", relayed)
    assert isinstance(seen[0]["b"], tf.Tensor)
    assert seen[0]["b"].dtype == tf.bfloat16
    assert bits(seen[0]["b"]) == bits(brain)
    assert bits(seen[0]["f8"]) == bits(f8)
    transport.close()
