"""Property tests: every value FOBS supports round-trips exactly, through every entry point."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import io
import math
import struct
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember import fobs

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
StringDType = np.dtypes.StringDType


# --- registered user types --------------------------------------------------------------------


@fobs.register
class Color(enum.Enum):
    """A plain Enum with mixed value types."""

    RED = "red"
    GREEN = 2
    BLUE = (3, "b")


@fobs.register
class Level(enum.IntEnum):
    """An int Enum: an int subclass, so msgpack must not take it as a native int."""

    LOW = 1
    HIGH = 2**70


@fobs.register
class Perm(enum.Flag):
    """A Flag: composite values are members too."""

    R = 4
    W = 2
    X = 1


@fobs.register
@dataclasses.dataclass
class Record:
    """A mutable dataclass holding arbitrary values, with a field outside ``__init__``."""

    name: Any
    payload: Any
    tag: Any = dataclasses.field(default=None, init=False)


@fobs.register
@dataclasses.dataclass(frozen=True)
class Key:
    """A frozen (hashable) dataclass, usable as a dict key or set member."""

    a: int
    b: str


ENUM_MEMBERS: list[enum.Enum] = [*Color, *Level, *Perm, Perm.R | Perm.W, Perm(0)]


# --- exact equality ---------------------------------------------------------------------------


def _same_float(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


_X87 = np.finfo(np.longdouble).nmant == 63  # 80-bit values stored in 16-byte slots


def _bits(arr: np.ndarray[Any, Any]) -> bytes:
    """The bytes that carry the values: x87 long doubles' 6 padding bytes are left out."""
    flat = np.ascontiguousarray(arr).reshape(-1)
    if _X87 and arr.dtype.type in (np.longdouble, np.clongdouble):
        slots = flat.view(np.uint8).reshape(-1, 16)
        return (slots[:, 6:] if arr.dtype.byteorder == ">" else slots[:, :10]).tobytes()
    return flat.tobytes()


def _same_array(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if isinstance(a.dtype, StringDType):
        return bool(a.tolist() == b.tolist())
    if a.dtype.names is not None:
        # numpy copies strided structured data field by field and leaves the padding between
        # fields uninitialized: the fields carry the values.
        return all(_same_array(a[name], b[name]) for name in a.dtype.names)
    return _bits(a) == _bits(b)


def _same_clock(a: dt.datetime | dt.time, b: dt.datetime | dt.time) -> bool:
    return (
        a.replace(tzinfo=None) == b.replace(tzinfo=None)
        and a.fold == b.fold
        and a.utcoffset() == b.utcoffset()
    )


def _same_items(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


def _same_set(a: set[Any] | frozenset[Any], b: set[Any] | frozenset[Any]) -> bool:
    rest = list(b)
    if len(a) != len(rest):
        return False
    for x in a:
        match = next((i for i, y in enumerate(rest) if same(x, y)), None)
        if match is None:
            return False
        rest.pop(match)
    return True


def same(a: Any, b: Any) -> bool:
    """Exact equality: same types all the way down, floats and array data compared bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, enum.Enum):
        return a is b
    if isinstance(a, float):
        return _same_float(a, b)
    if isinstance(a, np.ndarray):
        return _same_array(a, b)
    if isinstance(a, np.str_ | np.bytes_):
        return bool(a[:] == b[:])
    if isinstance(a, np.generic):
        return _same_array(np.asarray(a), np.asarray(b))
    if isinstance(a, dt.datetime | dt.time):
        return _same_clock(a, b)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, list | tuple):
        return _same_items(a, b)
    if isinstance(a, dict):
        return _same_items(list(a.items()), list(b.items()))
    if isinstance(a, set | frozenset):
        return _same_set(a, b)
    if dataclasses.is_dataclass(a):
        return all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    return bool(a == b)


def test_same_helper_is_strict() -> None:
    """The comparison used below tells apart what ``==`` conflates."""
    assert not same(0.0, -0.0)
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same((1,), [1])
    assert not same(np.float32(1), np.float64(1))
    assert not same(np.zeros(2, "<i4"), np.zeros(2, ">i4"))
    assert not same(decimal.Decimal("1.0"), decimal.Decimal("1"))
    assert not same(dt.datetime(2020, 1, 1, fold=1), dt.datetime(2020, 1, 1))
    assert not same({1: 2, 3: 4}, {3: 4, 1: 2})
    assert same(float("nan"), float("nan"))
    assert same({float("nan")}, {float("nan")})


# --- strategies -------------------------------------------------------------------------------

BIG_INTS = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=2**64, max_value=2**300),
    st.integers(min_value=-(2**300), max_value=-(2**63) - 1),
)
INTS = st.one_of(st.integers(), BIG_INTS)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 5e-324]),
    st.integers(min_value=0, max_value=2**64 - 1).map(
        lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]
    ),
)
TEXT = st.one_of(
    st.text(),
    st.text(st.characters(exclude_categories=())),  # lone surrogates included
)
FIXED_TZ = st.timedeltas(
    min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
).map(dt.timezone)
TZ = st.one_of(st.none(), FIXED_TZ, st.just(dt.UTC))
DECIMALS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [decimal.Decimal(s) for s in
         ("NaN", "-NaN", "sNaN", "-sNaN42", "NaN123", "Infinity", "-Infinity", "-0", "0E-30",
          "1.000", "-1E+999999")]
    ),
)
CLOCKS = st.one_of(
    st.datetimes(timezones=TZ),
    st.datetimes(),
    st.dates(),
    st.times(timezones=TZ),
    st.timedeltas(),
)

HASHABLE_LEAVES = st.one_of(
    st.none(), st.booleans(), INTS, FLOATS, TEXT, st.binary(), st.uuids(), st.dates(),
    st.sampled_from(ENUM_MEMBERS), st.builds(Key, st.integers(), st.text()),
)
HASHABLES = st.recursive(
    HASHABLE_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)
    ),
    max_leaves=6,
)

_SIMPLE_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64, 128)),
    hnp.complex_number_dtypes(endianness="?", sizes=(64, 128, 256)),
    hnp.datetime64_dtypes(endianness="?"),
    hnp.timedelta64_dtypes(endianness="?"),
    hnp.byte_string_dtypes(),
    hnp.unicode_string_dtypes(endianness="?"),
)
_PADDED = np.dtype(
    [("flag", "?"), ("v", ">f8", (2,)), ("inner", [("t", "<M8[ms]"), ("s", "S3")])], align=True
)
DTYPES = st.one_of(
    _SIMPLE_DTYPES,
    hnp.array_dtypes(_SIMPLE_DTYPES, allow_subarrays=True, max_size=4),
    hnp.nested_dtypes(_SIMPLE_DTYPES, max_leaves=5, max_itemsize=256),
    st.just(_PADDED),
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def _void_arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    size = draw(st.integers(1, 12))
    shape = draw(SHAPES)
    count = math.prod(shape)
    raw = draw(st.binary(min_size=size * count, max_size=size * count))
    return np.frombuffer(raw, dtype=f"V{size}").reshape(shape).copy()


@st.composite
def _string_dtype_arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    shape = draw(SHAPES)
    values = draw(st.lists(st.text(), min_size=math.prod(shape), max_size=math.prod(shape)))
    return np.array(values, dtype=StringDType()).reshape(shape)


def _layouts(arr: np.ndarray[Any, Any]) -> list[Callable[[Any], Any]]:
    views: list[Callable[[Any], Any]] = [lambda a: a]
    if arr.ndim:
        views += [np.asfortranarray, lambda a: a.T, lambda a: a[::2], lambda a: a[::-1]]
    if arr.ndim >= 2:
        views += [lambda a: a[:, 1::2], lambda a: np.swapaxes(a, 0, -1)[::-1]]
    return views


@st.composite
def _laid_out(draw: st.DrawFn, base: st.SearchStrategy[np.ndarray[Any, Any]]) -> Any:
    arr = draw(base)
    return draw(st.sampled_from(_layouts(arr)))(arr)


FIXED_ARRAYS = st.one_of(hnp.arrays(DTYPES, SHAPES), _void_arrays())
ARRAYS = st.one_of(_laid_out(FIXED_ARRAYS), _string_dtype_arrays())

NUMPY_SCALARS = st.one_of(
    hnp.arrays(DTYPES, ()).map(lambda a: a[()]),
    st.text().map(np.str_),
    st.binary().map(np.bytes_),
    st.booleans().map(np.bool_),
    st.sampled_from([np.datetime64("NaT"), np.datetime64("2024-02-29T12:00", "ns"),
                     np.timedelta64(-5, "W"), np.float32("nan"), np.float16(-0.0)]),
)

LEAVES = st.one_of(
    HASHABLE_LEAVES, DECIMALS, CLOCKS, NUMPY_SCALARS, ARRAYS,
)
NESTED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(HASHABLES, inner, max_size=4),
        st.dictionaries(HASHABLES, inner, max_size=4).map(OrderedDict),
        st.sets(HASHABLES, max_size=4),
        st.frozensets(HASHABLES, max_size=4),
        st.builds(Record, inner, inner),
    ),
    max_leaves=12,
)


# --- the three entry points -------------------------------------------------------------------


def _all_decodings(value: Any, tmp: Path) -> dict[str, Any]:
    # Frames of equal values need not be byte-identical (numpy leaves long double and struct
    # padding uninitialized), so each entry point is checked by what decodes from it.
    frame = fobs.dumps(value)
    stream = io.BytesIO()
    assert fobs.dump(value, stream) == len(frame) == len(stream.getvalue())
    stream.seek(0)
    path = tmp / "value.fobs"
    assert fobs.dumpf(value, path) == len(frame) == path.stat().st_size
    decoded = {
        "loads(bytes)": fobs.loads(frame),
        "loads(bytearray)": fobs.loads(bytearray(frame)),
        "loads(memoryview)": fobs.loads(memoryview(frame)),
        "load(stream)": fobs.load(stream),
        "loadf(path)": fobs.loadf(path),
    }
    assert stream.read() == b"", "load must consume exactly one frame"
    return decoded


def _assert_round_trips(value: Any, tmp: Path) -> dict[str, Any]:
    decoded = _all_decodings(value, tmp)
    for how, back in decoded.items():
        assert same(value, back), f"{how} changed {value!r} into {back!r}"
    return decoded


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory shared by the examples of this module (each overwrites its file)."""
    return tmp_path_factory.mktemp("fobs_roundtrip")


@SETTINGS
@given(value=st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT, st.binary()))
def test_msgpack_natives_and_big_ints(value: Any, tmp: Path) -> None:
    """None, bool, ints of any size and sign, floats bit-exactly, any str, bytes."""
    _assert_round_trips(value, tmp)


@SETTINGS
@given(value=st.one_of(CLOCKS, st.uuids(), DECIMALS, st.sampled_from(ENUM_MEMBERS),
                       st.builds(Key, st.integers(), st.text())))
def test_stdlib_and_registered_types(value: Any, tmp: Path) -> None:
    """datetime family (naive and fixed-offset), UUID, Decimal specials, Enums, dataclasses."""
    _assert_round_trips(value, tmp)


@settings(SETTINGS, max_examples=150)
@given(arr=ARRAYS)
def test_arrays_bit_exact(arr: np.ndarray[Any, Any], tmp: Path) -> None:
    """Arrays of every dtype and layout keep dtype, shape and bytes; Fortran stays Fortran."""
    decoded = _assert_round_trips(arr, tmp)
    fixed = not isinstance(arr.dtype, StringDType)
    for how, back in decoded.items():
        if fixed and arr.ndim >= 2 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
            assert back.flags.f_contiguous, how
        if fixed and arr.size and arr.itemsize:
            over_bytes = how in ("loads(bytes)", "loads(memoryview)")
            assert back.flags.writeable != over_bytes, how


@SETTINGS
@given(value=NUMPY_SCALARS)
def test_numpy_scalars(value: np.generic, tmp: Path) -> None:
    """numpy scalars come back as the same scalar type with the same bytes."""
    _assert_round_trips(value, tmp)


@settings(SETTINGS, max_examples=120)
@given(value=NESTED)
def test_nested_structures(value: Any, tmp: Path) -> None:
    """Arbitrary nesting of containers (hashable dict keys of every kind) and leaves."""
    _assert_round_trips(value, tmp)


@SETTINGS
@given(keys=st.lists(HASHABLES, max_size=8), values=st.lists(LEAVES, max_size=8))
def test_dict_keys_of_every_hashable_type(keys: list[Any], values: list[Any], tmp: Path) -> None:
    """Tuples, frozensets, big ints, floats, bytes, None, Enums and frozen dataclasses as keys."""
    value = dict(zip(keys, values, strict=False))
    _assert_round_trips(value, tmp)
    _assert_round_trips(set(keys), tmp)
    _assert_round_trips(frozenset(keys), tmp)


# --- targeted examples ------------------------------------------------------------------------


def test_special_values_examples(tmp: Path) -> None:
    """Explicit corner cases, independent of what hypothesis happens to draw."""
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7FF0_0000_0000_0001))[0]
    value = {
        (1, (2, frozenset({3, None}))): [2**64, -(2**64), 2**63, -(2**63) - 1, 2**1000],
        frozenset({b"k", 1.5}): (-0.0, math.inf, -math.inf, nan_payload),
        None: "\ud800\udfff mixed \U0001f600",
        True: OrderedDict([("z", 1), ("a", 2)]),
        2**80: {decimal.Decimal(s) for s in ("NaN", "Infinity", "-0", "1.10")},
        b"bytes": [decimal.Decimal("sNaN"), decimal.Decimal("-sNaN7")],
        Key(1, "x"): Record(Color.BLUE, [Level.HIGH, Perm.R | Perm.X]),
        uuid.UUID(int=2**128 - 1): [
            dt.datetime(2024, 3, 31, 2, 30, fold=1),
            dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-23, seconds=1))),
            dt.time(23, 59, 59, 999999, tzinfo=dt.timezone(-dt.timedelta(minutes=90))),
            dt.date.max,
            dt.timedelta.min,
        ],
        "numpy": [
            np.float32("nan"), np.bool_(False), np.datetime64("2020-01-01", "D"),
            np.str_("trailing\x00"), np.bytes_(b"nul\x00"), np.longdouble(1) / 3,
            np.complex64(1 - 2j), np.timedelta64("NaT", "s"), np.uint64(2**64 - 1),
        ],
    }
    record = value[Key(1, "x")]
    record.tag = {"set": "after init"}
    _assert_round_trips(value, tmp)


def _array_zoo() -> list[np.ndarray[Any, Any]]:
    base = np.arange(24, dtype=">i8").reshape(2, 3, 4)
    nested = np.dtype([("a", ">i4", (2, 3)), ("b", [("c", "<f2"), ("d", ">c8", (2,))])])
    structured = np.zeros((3, 2), dtype=nested)
    structured["a"] = np.arange(36).reshape(3, 2, 2, 3)
    structured["b"]["d"] = 1 + 2j
    return [
        np.array(7, dtype="<u2"),
        np.zeros((0,), "f4"),
        np.zeros((2, 0, 3), "M8[ns]", order="F"),
        np.asfortranarray(base),
        base[:, ::2, ::-1],
        base.transpose(2, 0, 1),
        np.arange(10, dtype="m8[h]")[::3],
        np.array([b"ab", b"c\x00", b""], "S3"),
        np.array(["é", "\U0001f600x", ""], ">U2"),
        np.frombuffer(bytes(range(12)), "V4"),
        structured,
        structured.T,
        np.array([1.5, np.nan, -0.0], np.float16),
        np.array([1 / 3], np.longdouble),
        np.array([1 - 1j], np.clongdouble),
        np.array([[True, False]]),
        np.array([["a", "bc"], ["", "d"]], dtype=StringDType()),
        np.array("0-d", dtype=StringDType()),
    ]


@pytest.mark.parametrize("arr", _array_zoo(), ids=lambda a: f"{a.dtype}-{a.shape}")
def test_array_examples(arr: np.ndarray[Any, Any], tmp: Path) -> None:
    """Hand-picked arrays: every layout and dtype family, in a list alongside other values."""
    decoded = _assert_round_trips([arr, (arr,), {"k": arr}], tmp)
    fortran = arr.ndim >= 2 and arr.flags.f_contiguous and not arr.flags.c_contiguous
    if fortran and not isinstance(arr.dtype, StringDType):
        assert all(d[0].flags.f_contiguous for d in decoded.values())


def test_writability_follows_the_source(tmp: Path) -> None:
    """Views over ``bytes`` are read-only; bytearray / stream / file give writable arrays."""
    arrays = {"c": np.arange(6.0).reshape(2, 3), "f": np.asfortranarray(np.ones((2, 3), "i2"))}
    frame = fobs.dumps(arrays)
    for arr in fobs.loads(frame).values():
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0, 0] = 1
    writable = [
        fobs.loads(bytearray(frame)),
        fobs.load(io.BytesIO(frame)),
        fobs.loads(memoryview(bytearray(frame))),
    ]
    fobs.dumpf(arrays, tmp / "w.fobs")
    writable.append(fobs.loadf(tmp / "w.fobs"))
    for decoded in writable:
        for name, arr in decoded.items():
            assert arr.flags.writeable
            arr[0, 0] = 42
            assert arr[0, 0] == 42
            assert same(arr[1:], arrays[name][1:])


def test_bytearray_views_share_memory() -> None:
    """``loads(bytearray)`` does not copy array data: the arrays view the message."""
    message = bytearray(fobs.dumps({"a": np.zeros(16, np.uint8)}))
    arr = fobs.loads(message)["a"]
    arr[:] = 7
    assert message.count(bytes([7]) * 16) == 1


def test_decoded_types_match() -> None:
    """Every decoded value has exactly the type of the original, not a look-alike."""
    originals: list[Any] = [
        (), [], {}, set(), frozenset(), OrderedDict(), True, 0, 2**64, 1.0, "", b"",
        np.float64(1.0), np.int64(1), np.bool_(True), np.str_("s"), np.bytes_(b"b"),
        np.datetime64(1, "s"), np.zeros(1), Color.RED, Level.LOW, Perm.W, Key(0, ""),
        dt.datetime(2000, 1, 1), dt.date(2000, 1, 1), dt.time(), dt.timedelta(),
        uuid.UUID(int=0), decimal.Decimal(0), Record(1, 2),
    ]
    decoded = fobs.loads(fobs.dumps(originals))
    assert [type(v) for v in decoded] == [type(v) for v in originals]


def test_registration_is_idempotent() -> None:
    """Registering the same Enum or dataclass twice is harmless and returns the class."""
    assert fobs.register(Color) is Color
    assert fobs.register(Record) is Record
    assert same(fobs.loads(fobs.dumps(Record(Color.RED, 1))), Record(Color.RED, 1))
