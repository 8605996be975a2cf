"""FOBS on hostile input: fuzzed frames, forbidden type names, object dtypes, bombs, no pickle."""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import decimal
import enum
import io
import marshal
import os
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember import fobs
from ember.config import Config, use_config
from ember.fobs import codec

# --- frames built by hand ---------------------------------------------------------------------


def build_frame(body: bytes, buffers: Sequence[bytes] = ()) -> bytes:
    """A FOBS frame around a msgpack ``body``, laid out as codec.py documents."""
    out = bytearray(struct.pack("<4sB3xQQ", codec.MAGIC, codec.VERSION, len(body), len(buffers)))
    out += struct.pack(f"<{len(buffers)}Q", *(len(b) for b in buffers))
    out += body
    for buf in buffers:
        out += bytes(-len(out) % codec.ALIGN)
        out += buf
    return bytes(out)


def pack(value: Any) -> bytes:
    """msgpack ``value`` the way FOBS does (bin type for bytes)."""
    return msgpack.packb(value, use_bin_type=True)


def obj(name: str, data: Any) -> msgpack.ExtType:
    """An object extension naming the type ``name``."""
    return msgpack.ExtType(codec.EXT_OBJECT, pack([name, data]))


def buf_ref(index: int) -> msgpack.ExtType:
    """A reference to out-of-line buffer ``index``."""
    return msgpack.ExtType(codec.EXT_BUFFER, struct.pack("<Q", index))


def ndarray_frame(dtype: Any, shape: list[int], raw: bytes, order: str = "C") -> bytes:
    """A frame holding one ndarray described by hand."""
    data = {"dtype": dtype, "shape": shape, "order": order, "data": buf_ref(0)}
    return build_frame(pack(obj("numpy.ndarray", data)), [raw])


def nested_tuples(depth: int) -> msgpack.ExtType:
    """``depth`` tuples, each holding the next, built without FOBS's depth check."""
    ext = msgpack.ExtType(codec.EXT_TUPLE, pack([]))
    for _ in range(depth - 1):
        ext = msgpack.ExtType(codec.EXT_TUPLE, pack([ext]))
    return ext


def test_hand_built_frames_match_fobs() -> None:
    """The helpers above speak exactly FOBS's wire format (so the payloads below are real)."""
    assert build_frame(pack([1, "a", b"b"])) == fobs.dumps([1, "a", b"b"])
    arr = np.arange(5, dtype="<i4")
    assert ndarray_frame("<i4", [5], arr.tobytes()) == fobs.dumps(arr)
    assert build_frame(pack(nested_tuples(3))) == fobs.dumps((((),),))
    assert build_frame(pack(msgpack.ExtType(codec.EXT_BIGINT, (2**64).to_bytes(9, "big")))) == (
        fobs.dumps(2**64)
    )


# --- seed frames and mutations ----------------------------------------------------------------


@fobs.register
class Mode(enum.Enum):
    """A registered Enum for the seed frames."""

    A = "a"
    B = 2


@fobs.register
@dataclasses.dataclass(frozen=True)
class Point:
    """A registered dataclass for the seed frames."""

    x: Any
    y: Any


def _seed_values() -> list[Any]:
    structured = np.zeros(3, dtype=[("a", ">i4", (2,)), ("b", [("c", "<f8"), ("d", "S2")])])
    return [
        {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, ">i2")},
        (1, (2, (3, ())), frozenset({4, (5,)}), {6, 7}),
        [2**64, -(2**100), 2**63 - 1, -(2**63), 1.5, None, True, "s\ud800", b"b"],
        {"s": structured, "f": np.asfortranarray(np.eye(3, dtype="c8")), "e": np.zeros((0, 2))},
        np.array(["x", "yz"], dtype=np.dtypes.StringDType()),
        [np.float32(1.5), np.datetime64("2020-01-01", "ms"), np.str_("u"), np.bytes_(b"v")],
        OrderedDict(t=dt.datetime(2020, 1, 2, 3, tzinfo=dt.UTC), d=dt.date(2020, 1, 1),
                    td=dt.timedelta(seconds=-1), u=uuid.UUID(int=7), n=decimal.Decimal("-0.5")),
        [Point(Mode.A, (1, 2)), {Point(1, 2): Mode.B}],
        np.array(3.25, dtype=">f8"),
        (),
    ]


SEED_FRAMES: list[bytes] = [fobs.dumps(v) for v in _seed_values()]
SMALL_FRAME = fobs.dumps({"a": np.arange(3, dtype="<u2"), "t": (2**70, "x")})
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC1, 0xC7, 0xD4, 0xD9, 0xDC, 0xDD, 0xDF)
INTERESTING_U64 = (0, 1, 7, 8, 63, 64, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1)


def apply_mutation(data: bytearray, op: int, pos: int, chunk: bytes) -> None:
    """One in-place mutation; ``pos`` is taken modulo the length, ``chunk`` supplies bytes."""
    n = len(data)
    i = pos % n if n else 0
    value = chunk[0] if chunk else 0
    if op == 0 and n:  # flip one bit
        data[i] ^= 1 << (value % 8)
    elif op == 1 and n:  # replace a byte, often by a msgpack type marker
        data[i] = INTERESTING_BYTES[value % len(INTERESTING_BYTES)] if value & 1 else value
    elif op == 2:  # insert bytes
        data[i:i] = chunk or b"\0"
    elif op == 3 and n:  # delete a range
        del data[i : i + 1 + value % 16]
    elif op == 4:  # truncate
        del data[i:]
    elif op == 5 and n >= 8:  # overwrite an aligned u64 (header lengths, buffer lengths)
        j = (i // 8) * 8 if i + 8 <= n else n - 8
        data[j : j + 8] = struct.pack("<Q", INTERESTING_U64[value % len(INTERESTING_U64)])
    elif op == 6 and n:  # duplicate a slice
        data[i:i] = data[i : i + 1 + value % 32]
    elif n:  # overwrite with garbage
        data[i : i + len(chunk)] = chunk


def random_mutant(rng: random.Random, frame: bytes) -> bytes:
    """``frame`` with one to four random mutations, or occasionally pure garbage."""
    if rng.random() < 0.03:
        garbage = rng.randbytes(rng.randrange(64))
        return codec.MAGIC + bytes([codec.VERSION]) + garbage if rng.random() < 0.5 else garbage
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        apply_mutation(data, rng.randrange(8), rng.randrange(1 << 30),
                       rng.randbytes(rng.randint(0, 12)))
    return bytes(data)


def loads_outcome(data: bytes | bytearray) -> bool:
    """True if ``loads`` decoded ``data``, False if it raised FOBSError; anything else escapes."""
    try:
        fobs.loads(data)
    except fobs.FOBSError:
        return False
    return True


def load_outcome(data: bytes) -> bool:
    """The same for ``load`` from a stream."""
    try:
        fobs.load(io.BytesIO(data))
    except fobs.FOBSError:
        return False
    return True


@pytest.fixture
def small_stream_limit() -> Iterator[None]:
    """Cap what a (mutated) stream header can make ``load`` allocate."""
    with use_config(Config(overrides={"fobs.max_message_bytes": 1 << 20})):
        yield


# --- (a) fuzzing ------------------------------------------------------------------------------


def test_seed_frames_decode() -> None:
    """The unmutated seeds are valid, so mutants start from real messages."""
    for frame in SEED_FRAMES:
        assert loads_outcome(frame)
        assert load_outcome(frame)


def test_random_mutants_raise_only_fobserror(small_stream_limit: None) -> None:
    """Thousands of seeded random mutants: loads and load decode or raise FOBSError only."""
    rng = random.Random(20240611)
    outcomes = {True: 0, False: 0}
    for _ in range(3000):
        mutant = random_mutant(rng, rng.choice(SEED_FRAMES))
        outcomes[loads_outcome(mutant)] += 1
        outcomes[loads_outcome(bytearray(mutant))] += 1
        outcomes[load_outcome(mutant)] += 1
    assert outcomes[False] > 1000  # most mutants are caught ...
    assert outcomes[True] > 100  # ... while payload-only mutations still decode


def test_every_truncation_is_refused() -> None:
    """A frame cut at any length is refused by both loads and load."""
    for end in range(len(SMALL_FRAME)):
        cut = SMALL_FRAME[:end]
        with pytest.raises(fobs.FOBSError):
            fobs.loads(cut)
        with pytest.raises(fobs.FOBSError):
            fobs.load(io.BytesIO(cut))


def test_trailing_bytes_are_refused() -> None:
    """A frame followed by anything is not silently accepted by loads."""
    for extra in (b"\0", b"FOBS", SMALL_FRAME):
        with pytest.raises(fobs.FOBSError, match="trailing"):
            fobs.loads(SMALL_FRAME + extra)


def test_every_bit_flip_of_a_small_frame(small_stream_limit: None) -> None:
    """Each single-bit flip of a small frame decodes or raises FOBSError, via loads and load."""
    errors = 0
    for i in range(len(SMALL_FRAME)):
        for bit in range(8):
            data = bytearray(SMALL_FRAME)
            data[i] ^= 1 << bit
            errors += not loads_outcome(bytes(data))
            errors += not load_outcome(bytes(data))
    assert errors > 0


def test_every_byte_value_at_every_body_position(small_stream_limit: None) -> None:
    """Every value of every header and body byte of a small frame (not the array data)."""
    header = struct.calcsize("<4sB3xQQ")
    body_len, nbuf = struct.unpack_from("<QQ", SMALL_FRAME, 8)
    end = header + 8 * nbuf + body_len
    for i in range(end):
        for value in range(256):
            data = bytearray(SMALL_FRAME)
            data[i] = value
            loads_outcome(bytes(data))
    for i in range(0, end, 3):
        for value in INTERESTING_BYTES:
            data = bytearray(SMALL_FRAME)
            data[i] = value
            load_outcome(bytes(data))


MUTATIONS = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 1 << 20), st.binary(max_size=12)),
    min_size=1, max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, len(SEED_FRAMES) - 1), mutations=MUTATIONS)
def test_hypothesis_mutants_raise_only_fobserror(index: int, mutations: list[Any]) -> None:
    """Hypothesis-driven mutants (shrinkable on failure) through loads and load."""
    data = bytearray(SEED_FRAMES[index])
    for op, pos, chunk in mutations:
        apply_mutation(data, op, pos, chunk)
    loads_outcome(bytes(data))
    with use_config(Config(overrides={"fobs.max_message_bytes": 1 << 20})):
        load_outcome(bytes(data))


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_fobserror(garbage: bytes) -> None:
    """Raw garbage, with and without a valid preamble in front."""
    loads_outcome(garbage)
    preamble = struct.pack("<4sB3xQQ", codec.MAGIC, codec.VERSION, len(garbage), 0)
    loads_outcome(preamble + garbage)
    with use_config(Config(overrides={"fobs.max_message_bytes": 1 << 20})):
        load_outcome(preamble + garbage)


@settings(max_examples=300, deadline=None)
@given(body=st.recursive(
    st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=8),
              st.binary(max_size=8), st.floats(), st.booleans()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=6), inner, max_size=3),
        st.tuples(st.integers(-128, 127), inner).map(
            lambda t: msgpack.ExtType(t[0] % 8, pack(t[1]))
        ),
        st.tuples(st.sampled_from(["numpy.ndarray", "numpy.generic", "datetime.datetime",
                                   "decimal.Decimal", "uuid.UUID", "collections.OrderedDict"]),
                  inner).map(lambda t: obj(*t)),
    ),
    max_leaves=10,
), buffers=st.lists(st.binary(max_size=40), max_size=3))
def test_well_formed_frames_with_hostile_bodies(body: Any, buffers: list[bytes]) -> None:
    """Structurally valid frames whose msgpack bodies are arbitrary, extensions included."""
    loads_outcome(build_frame(pack(body), buffers))


def test_non_bytes_input_is_refused() -> None:
    """loads takes bytes-like objects only, and says so with FOBSError."""
    for bad in ("FOBS", None, 1, [1], memoryview(np.zeros((2, 2))[:, 0])):
        with pytest.raises(fobs.FOBSError):
            fobs.loads(bad)  # type: ignore[arg-type]


def test_unknown_version_and_magic() -> None:
    """A wrong magic or an unsupported version is named in the error."""
    with pytest.raises(fobs.FOBSError, match="not a FOBS message"):
        fobs.loads(b"PKL5" + SMALL_FRAME[4:])
    with pytest.raises(fobs.FOBSError, match="version 2"):
        fobs.loads(SMALL_FRAME[:4] + b"\x02" + SMALL_FRAME[5:])


# --- (b) forbidden names ----------------------------------------------------------------------

EVIL_MODULE = "ember_evil_module_xyz"


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module that leaves a marker file if anything imports it."""
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        class Payload:
            def __init__(self, *args):
                pathlib.Path({str(marker)!r}).write_text("called")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, EVIL_MODULE, raising=False)
    return marker


@pytest.fixture
def no_process_spawning(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and block) any attempt to run a command while the test runs."""
    calls: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(repr(args))
        raise AssertionError(f"decoding tried to run {args!r}")

    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    return calls


FORBIDDEN_NAMES = [
    "os.system", "posix.system", "builtins.eval", "builtins.exec", "builtins.__import__",
    "subprocess.Popen", "subprocess.check_output", "pickle.loads", "numpy.load",
    "numpy.lib.format.read_array", "ember.fobs.codec.loads", "importlib.import_module",
    f"{EVIL_MODULE}.Payload", f"{EVIL_MODULE}:Payload", "numpy.ndarray.__reduce__",
    "datetime.datetime.fromisoformat", "", "x" * 500,
]


@pytest.mark.parametrize("name", FORBIDDEN_NAMES)
def test_unregistered_type_names_are_refused(
    name: str, evil_module: Path, no_process_spawning: list[str]
) -> None:
    """A payload naming any unregistered type is refused by name, and nothing gets imported."""
    modules_before = set(sys.modules)
    payloads = [
        obj(name, "echo pwned"),
        [1, {"k": obj(name, ["rm", "-rf", "/"])}],
        msgpack.ExtType(codec.EXT_TUPLE, pack([obj(name, None)])),
        obj("collections.OrderedDict", {"a": obj(name, {})}),
    ]
    for payload in payloads:
        frame = build_frame(pack(payload))
        with pytest.raises(fobs.FOBSError) as info:
            fobs.loads(frame)
        assert repr(name) in str(info.value)
        with pytest.raises(fobs.FOBSError):
            fobs.load(io.BytesIO(frame))
    assert EVIL_MODULE not in sys.modules
    assert not evil_module.exists()
    assert no_process_spawning == []
    new_modules = set(sys.modules) - modules_before
    assert not {m for m in new_modules if m.split(".")[0] in {"subprocess", "pickle", EVIL_MODULE}}


def test_evil_module_fixture_is_importable(evil_module: Path) -> None:
    """The module above really would be imported (and leave its marker) if asked for by name."""
    import importlib

    importlib.import_module(EVIL_MODULE)
    assert evil_module.read_text() == "imported"
    del sys.modules[EVIL_MODULE]


# --- (c) unregistered types on the encode side ------------------------------------------------


class Unregistered:
    """A class nobody registered."""


class Shade(enum.Enum):
    """An Enum that was not registered."""

    DARK = 1


@dataclasses.dataclass
class Plain:
    """A dataclass that was not registered."""

    v: int = 0


@pytest.mark.parametrize("value", [
    Unregistered(), [1, {"k": Unregistered()}], (Unregistered(),), Shade.DARK, Plain(),
    {"nested": [Plain()]}, 1 + 2j, Unregistered, object(),
])
def test_dumps_of_unregistered_types_explains_register(value: Any) -> None:
    """dumps names the type and points at ember.fobs.register."""
    offender = _offender(value)
    with pytest.raises(fobs.FOBSError) as info:
        fobs.dumps(value)
    message = str(info.value)
    assert fobs.type_name(type(offender)) in message
    assert "ember.fobs.register" in message
    with pytest.raises(fobs.FOBSError):
        fobs.dump(value, io.BytesIO())


def _offender(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return _offender(value[-1])
    if isinstance(value, dict):
        return _offender(next(iter(value.values())))
    return value


# --- (d) object arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("arr", [
    np.array([1, "a", None], dtype=object),
    np.zeros(2, dtype=[("a", "i4"), ("o", "O")]),
    np.zeros((2, 2), dtype=object).T,
    np.empty(0, dtype=object),
])
def test_object_arrays_are_refused_on_dumps(arr: np.ndarray[Any, Any]) -> None:
    """Arrays holding object pointers cannot be sent."""
    with pytest.raises(fobs.FOBSError, match="object"):
        fobs.dumps({"x": arr})


@pytest.mark.parametrize("dtype", [
    "O", "|O", "object", "<O8", "T",
    {"sub": ["|O", [2]]},
    {"names": ["a", "b"], "formats": ["<i8", "|O"], "offsets": [0, 8], "itemsize": 16},
    {"names": ["a"], "formats": [{"sub": ["O", [1]]}], "offsets": [0], "itemsize": 8},
])
def test_object_dtypes_are_refused_on_loads(dtype: Any) -> None:
    """A hand-built frame declaring an object dtype (raw pointers!) is refused."""
    raw = struct.pack("<2Q", 0x4141414141414141, 0x4242424242424242)
    for frame in (
        ndarray_frame(dtype, [1], raw[:8]),
        ndarray_frame(dtype, [2], raw),
        ndarray_frame(dtype, [0], b""),
        build_frame(pack(obj("numpy.generic", {"dtype": dtype, "data": raw[:8]}))),
    ):
        with pytest.raises(fobs.FOBSError):
            fobs.loads(frame)
        with pytest.raises(fobs.FOBSError):
            fobs.loads(bytearray(frame))


def test_malformed_dtype_descriptions() -> None:
    """Dtype descriptions that are not what FOBS writes are refused, not interpreted."""
    for dtype in (None, 5, [1, 2], {"sub": "x"}, {"names": [1], "formats": ["i1"],
                  "offsets": [0], "itemsize": 1}, "i4,O", "not a dtype", {"sub": [None, [1]]},
                  _deep_sub(40)):
        with pytest.raises(fobs.FOBSError):
            fobs.loads(ndarray_frame(dtype, [1], b"\0" * 4))


def _deep_sub(depth: int) -> Any:
    wire: Any = "<i4"
    for _ in range(depth):
        wire = {"sub": [wire, [1]]}
    return wire


# --- (e) buffer length and references ---------------------------------------------------------


@pytest.mark.parametrize(("dtype", "shape", "size"), [
    ("<i4", [3], 8), ("<i4", [3], 16), ("<f8", [2, 2], 31), ("<f8", [], 7), ("|u1", [0], 1),
    ("<c16", [1], 0), ("<i4", [2**62, 4], 16), ("|u1", [2**62 + 1, 4], 4), ("|u1", [2**64 - 1], 1),
    ("|u1", [2**32, 2**32], 0),
])
def test_buffer_length_must_match_shape(dtype: str, shape: list[int], size: int) -> None:
    """shape x itemsize must equal the buffer length exactly (64-bit overflow included)."""
    with pytest.raises(fobs.FOBSError):
        fobs.loads(ndarray_frame(dtype, shape, b"\x01" * size))


def test_buffer_length_mismatch_message() -> None:
    """The error says what the shape needs and what the message holds."""
    with pytest.raises(fobs.FOBSError, match="needs 12 bytes, the message has 8"):
        fobs.loads(ndarray_frame("<i4", [3], b"\0" * 8))


def test_bad_buffer_references() -> None:
    """Out-of-range, malformed and missing buffer references are refused."""
    data = {"dtype": "<i4", "shape": [1], "order": "C", "data": buf_ref(1)}
    with pytest.raises(fobs.FOBSError, match="out of range"):
        fobs.loads(build_frame(pack(obj("numpy.ndarray", data)), [b"\0" * 4]))
    with pytest.raises(fobs.FOBSError, match="buffer reference"):
        fobs.loads(build_frame(pack(msgpack.ExtType(codec.EXT_BUFFER, b"\0" * 7))))
    with pytest.raises(fobs.FOBSError, match="out of range"):
        fobs.loads(build_frame(pack(buf_ref(2**64 - 1))))
    for broken in ({**data, "data": 5}, {**data, "order": "K"}, {"dtype": "<i4"},
                   {**data, "shape": [-1]}, {**data, "shape": "1"}, ["<i4", [1], "C"]):
        with pytest.raises(fobs.FOBSError):
            fobs.loads(build_frame(pack(obj("numpy.ndarray", broken)), [b"\0" * 4]))


def test_header_lengths_are_checked() -> None:
    """Declared body and buffer lengths past the end of the frame are refused."""
    body = pack([1])
    for body_len, nbuf in ((len(body) + 1, 0), (2**64 - 1, 0), (len(body), 1), (0, 2**61)):
        frame = struct.pack("<4sB3xQQ", codec.MAGIC, codec.VERSION, body_len, nbuf) + body
        with pytest.raises(fobs.FOBSError, match="truncated"):
            fobs.loads(frame)
    frame = bytearray(ndarray_frame("<i4", [1], b"\0" * 4))
    frame[24:32] = struct.pack("<Q", 2**64 - 1)
    with pytest.raises(fobs.FOBSError, match="runs past the end"):
        fobs.loads(bytes(frame))


def test_big_int_encoding_is_canonical() -> None:
    """A big-int extension must hold a value that does not fit a native msgpack int."""
    for raw in (b"", b"\x01", (2**63).to_bytes(9, "big")):
        with pytest.raises(fobs.FOBSError, match="big integer"):
            fobs.loads(build_frame(pack(msgpack.ExtType(codec.EXT_BIGINT, raw))))


def test_unknown_extension_code() -> None:
    """Extension codes FOBS does not define are refused by number."""
    for code in (0, 7, 42, 127):
        with pytest.raises(fobs.FOBSError, match=f"extension type {code}"):
            fobs.loads(build_frame(pack(msgpack.ExtType(code, b"x"))))
    for code in (-2, -128):  # reserved by msgpack; ExtType() will not build them
        with pytest.raises(fobs.FOBSError, match=f"extension type {code}"):
            fobs.loads(build_frame(b"\xd4" + struct.pack("b", code) + b"x"))


# --- (f) depth and cycles ---------------------------------------------------------------------


def _nested(depth: int, make: Any) -> Any:
    value: Any = None
    for _ in range(depth):
        value = make(value)
    return value


@pytest.mark.parametrize("make", [
    lambda v: (v,), lambda v: frozenset({v}),
    lambda v: Point(v, None), lambda v: OrderedDict(a=v), lambda v: [(v,)],
])
def test_too_deep_is_refused_on_dumps(make: Any) -> None:
    """Nesting of tuples, sets and objects beyond fobs.max_depth cannot be encoded."""
    with pytest.raises(fobs.FOBSError, match="max_depth"):
        fobs.dumps(_nested(300, make))


def test_too_deep_is_refused_on_loads() -> None:
    """A hand-built frame nesting tuples beyond fobs.max_depth is refused."""
    with pytest.raises(fobs.FOBSError, match="max_depth=256"):
        fobs.loads(build_frame(pack(nested_tuples(300))))
    with pytest.raises(fobs.FOBSError, match="max_depth=256"):
        fobs.load(io.BytesIO(build_frame(pack(nested_tuples(1000)))))


def test_max_depth_is_configurable() -> None:
    """The limit follows the config in force, on both sides."""
    with use_config(Config(overrides={"fobs.max_depth": 10})):
        assert fobs.loads(fobs.dumps(_nested(8, lambda v: (v,)))) == _nested(8, lambda v: (v,))
        with pytest.raises(fobs.FOBSError, match="max_depth=10"):
            fobs.dumps(_nested(10, lambda v: (v,)))
        with pytest.raises(fobs.FOBSError, match="max_depth=10"):
            fobs.loads(build_frame(pack(nested_tuples(10))))
    assert fobs.loads(fobs.dumps(_nested(10, lambda v: (v,)))) == _nested(10, lambda v: (v,))


def test_deep_legitimate_messages_do_not_crash_the_decoder() -> None:
    """Nesting right up to the limit decodes, also in a thread with a small stack.

    Regression: each nesting level used to cost ~40 KiB of C stack (msgpack.unpackb's parse
    stack), so ~200 nested tuples segfaulted the receiver before max_depth=256 was reached.
    Runs in a child process so that a crash fails this test instead of killing the run.
    """
    code = textwrap.dedent("""
        import threading
        from ember import fobs

        value = ()
        for _ in range(254):
            value = (value,)
        frame = fobs.dumps(value)
        assert fobs.loads(frame) == value
        results = []
        threading.stack_size(2 << 20)
        thread = threading.Thread(target=lambda: results.append(fobs.loads(frame) == value))
        thread.start()
        thread.join()
        assert results == [True], results
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_raised_limit_degrades_to_fobserror() -> None:
    """With max_depth raised far past what the stack allows, deep frames still give FOBSError."""
    with use_config(Config(overrides={"fobs.max_depth": 100_000})):
        frame = build_frame(pack(nested_tuples(5000)))
        with pytest.raises(fobs.FOBSError):
            fobs.loads(frame)


def test_deep_native_lists() -> None:
    """Deep plain lists (not counted by max_depth) are refused cleanly on both sides."""
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(fobs.FOBSError):
        fobs.dumps(deep)
    with pytest.raises(fobs.FOBSError):
        fobs.loads(build_frame(b"\x91" * 5000 + b"\xc0"))


def test_cycles_are_refused_on_dumps() -> None:
    """Self-referencing data gives FOBSError, not a RecursionError or a hang."""
    cyclic_list: list[Any] = []
    cyclic_list.append(cyclic_list)
    cyclic_dict: dict[str, Any] = {}
    cyclic_dict["self"] = cyclic_dict
    via_tuple: list[Any] = []
    via_tuple.append((via_tuple,))

    @dataclasses.dataclass
    class Node:
        next: Any = None

    fobs.register(Node)
    node = Node()
    node.next = node
    for value in (cyclic_list, cyclic_dict, via_tuple, node, OrderedDict(x=cyclic_list)):
        with pytest.raises(fobs.FOBSError):
            fobs.dumps(value)
        with pytest.raises(fobs.FOBSError):
            fobs.dump(value, io.BytesIO())


# --- (g) stream size limit --------------------------------------------------------------------


class WatchedStream(io.BytesIO):
    """A stream that records the largest read it was asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def read(self, size: int | None = -1) -> bytes:
        self.largest = max(self.largest, size if size is not None and size >= 0 else 1 << 62)
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        self.largest = max(self.largest, memoryview(buffer).nbytes)
        return super().readinto(buffer)


def _preamble(body_len: int, lengths: Sequence[int]) -> bytes:
    head = struct.pack("<4sB3xQQ", codec.MAGIC, codec.VERSION, body_len, len(lengths))
    return head + struct.pack(f"<{len(lengths)}Q", *lengths)


@pytest.mark.parametrize(("body_len", "lengths"), [
    (1001, []), (2**63, []), (0, [1001]), (0, [600, 600]), (500, [2**64 - 1]), (0, [0] * 200),
    (10, [2**40, 2**40]),
])
def test_load_refuses_oversized_declarations_before_reading(
    body_len: int, lengths: list[int]
) -> None:
    """A header declaring more than fobs.max_message_bytes is refused before any allocation."""
    stream = WatchedStream(_preamble(body_len, lengths) + b"\0" * 64)
    with use_config(Config(overrides={"fobs.max_message_bytes": 1000})), pytest.raises(
        fobs.FOBSError, match="max_message_bytes=1000"
    ):
        fobs.load(stream)
    assert stream.largest <= 1000


def test_load_limit_on_real_frames(tmp_path: Path) -> None:
    """Real frames above the limit are refused from streams and files; below it they load."""
    value = {"a": np.zeros(300, np.float32)}
    path = tmp_path / "big.fobs"
    fobs.dumpf(value, path)
    with use_config(Config(overrides={"fobs.max_message_bytes": 1000})):
        with pytest.raises(fobs.FOBSError, match="max_message_bytes"):
            fobs.load(io.BytesIO(fobs.dumps(value)))
        with pytest.raises(fobs.FOBSError, match="max_message_bytes"):
            fobs.loadf(path)
        assert fobs.loads(fobs.dumps(value))["a"].shape == (300,)  # bytes in hand: no limit
    with use_config(Config(overrides={"fobs.max_message_bytes": 2000})):
        assert fobs.loadf(path)["a"].shape == (300,)


def test_load_of_a_truncated_stream() -> None:
    """A stream that ends early is refused, whichever part is missing."""
    frame = fobs.dumps({"a": np.arange(100), "b": (1, 2)})
    for end in (0, 3, 16, 24, 40, len(frame) // 2, len(frame) - 1):
        with pytest.raises(fobs.FOBSError, match="truncated"):
            fobs.load(io.BytesIO(frame[:end]))


def test_loadf_of_a_missing_file(tmp_path: Path) -> None:
    """A missing file is a FOBSError too."""
    with pytest.raises(fobs.FOBSError, match="cannot open"):
        fobs.loadf(tmp_path / "absent.fobs")


# --- (h) no pickle, marshal or imports on the way ---------------------------------------------


def _rich_value() -> dict[str, Any]:
    return {
        "arrays": [np.arange(6, dtype=">f4").reshape(2, 3), np.asfortranarray(np.eye(2)),
                   np.zeros(2, [("a", "<i2", (2,)), ("b", "S2")]), np.array(["s"], "U3"),
                   np.array(["t", "uv"], np.dtypes.StringDType()), np.arange(3).astype("M8[D]")],
        "scalars": (np.float16(1.5), np.bool_(True), np.datetime64(5, "s"), np.str_("x")),
        "std": OrderedDict(d=dt.datetime(2021, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                           u=uuid.UUID(int=99), n=decimal.Decimal("sNaN"),
                           t=dt.time(1, 2), td=dt.timedelta(days=3), day=dt.date(1999, 1, 1)),
        "registered": [Point(Mode.A, frozenset({1, 2})), {Point(1, 2): {Mode.B}}],
        "big": (2**100, -(2**64)),
    }


def _check_rich(back: dict[str, Any], writable: bool) -> None:
    original = _rich_value()
    for a, b in zip(original["arrays"], back["arrays"], strict=True):
        assert type(b) is np.ndarray
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        if isinstance(a.dtype, np.dtypes.StringDType):
            assert a.tolist() == b.tolist()
        else:
            assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    assert back["arrays"][1].flags.f_contiguous
    assert back["arrays"][0].flags.writeable == writable
    assert [type(s) for s in back["scalars"]] == [type(s) for s in original["scalars"]]
    assert back["scalars"] == original["scalars"]
    assert type(back["std"]) is OrderedDict
    assert list(back["std"]) == list(original["std"])
    assert str(back["std"].pop("n")) == "sNaN"
    original["std"].pop("n")
    assert back["std"] == original["std"]
    assert back["registered"] == original["registered"]
    assert back["big"] == original["big"]


def test_round_trip_never_touches_pickle_marshal_or_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With pickle, marshal, numpy.load and fresh imports booby-trapped, FOBS still works."""
    fobs.loads(fobs.dumps(_rich_value()))  # warm up: plugin decomposers load on first use
    called: list[str] = []

    def trap(name: str) -> Any:
        def trapped(*args: Any, **kwargs: Any) -> Any:
            called.append(name)
            raise AssertionError(f"FOBS called {name}")
        return trapped

    for module, attr in [
        (pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (pickle, "_loads"),
        (pickle, "_load"), (pickle, "_Unpickler"), (pickle, "dumps"), (pickle, "Pickler"),
        (marshal, "loads"), (marshal, "load"), (np, "load"),
    ]:
        monkeypatch.setattr(module, attr, trap(f"{module.__name__}.{attr}"))
    real_import = builtins.__import__

    def guarded_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in sys.modules:
            called.append(f"import {name}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded_import)
    frame = fobs.dumps(_rich_value())
    stream = io.BytesIO()
    fobs.dump(_rich_value(), stream)
    fobs.dumpf(_rich_value(), tmp_path / "rich.fobs")
    _check_rich(fobs.loads(frame), writable=False)
    _check_rich(fobs.loads(bytearray(frame)), writable=True)
    _check_rich(fobs.load(io.BytesIO(stream.getvalue())), writable=True)
    _check_rich(fobs.loadf(tmp_path / "rich.fobs"), writable=True)
    monkeypatch.undo()
    assert called == []


def _frame_declaring(length: int, provided: int) -> bytes:
    """A frame whose one buffer claims ``length`` bytes but carries only ``provided``."""
    body = msgpack.packb(msgpack.ExtType(codec.EXT_BUFFER, struct.pack("<Q", 0)))
    head = struct.pack("<4sB3xQQQ", codec.MAGIC, codec.VERSION, len(body), 1, length)
    start = len(head) + len(body)
    return head + body + b"\0" * (-start % codec.ALIGN) + b"x" * provided


class _Pipe(io.RawIOBase):
    """A non-seekable stream, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._data.readinto(b)


def test_short_file_is_refused_before_allocating() -> None:
    with pytest.raises(fobs.FOBSError, match=r"declares \d+ more bytes, the stream has \d+"):
        fobs.load(io.BytesIO(_frame_declaring(1 << 30, 10)))


def test_short_pipe_does_not_allocate_what_it_declares() -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(fobs.FOBSError, match="truncated FOBS stream"):
            fobs.load(_Pipe(_frame_declaring(1 << 30, 1000)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20
