"""The FOBS frame: a msgpack body plus out-of-line, 64-byte aligned raw buffers.

Frame layout (all integers little-endian)::

    0   4 bytes   magic b"FOBS"
    4   u8        format version (1)
    5   3 bytes   reserved, zero
    8   u64       body length
    16  u64       number of buffers N
    24  N x u64   buffer lengths
    ..  body      msgpack
    ..  buffers   each starting at a multiple of 64 from the frame start, zero padding between

msgpack carries None, bool, int (64-bit), float, str, bytes, list and dict natively; the
extension types below carry the rest. Nothing on the decode path imports a module, calls
pickle/marshal/eval or trusts a length it has not checked against the frame.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import IO, Any

import msgpack

from ember.config import get_setting
from ember.fobs.decomposer import Buffer, Context
from ember.fobs.errors import FOBSError
from ember.fobs.table import DecomposerTable, get_table

MAGIC = b"FOBS"
VERSION = 1
ALIGN = 64
_PREAMBLE = struct.Struct("<4sB3xQQ")

EXT_TUPLE = 1
EXT_SET = 2
EXT_FROZENSET = 3
EXT_BIGINT = 4
EXT_BUFFER = 5
EXT_OBJECT = 6

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


_C_STACK_LEVELS = 8  # nesting levels decoded with msgpack.unpackb (fast, C-stack hungry)


def _pad(n: int) -> int:
    return -n % ALIGN


class _Encoder:
    def __init__(self, table: DecomposerTable, ctx: Context) -> None:
        self.table = table
        self.ctx = ctx
        self.buffers: list[memoryview] = []
        self.depth = 0
        self.max_depth = int(get_setting("fobs.max_depth"))

    def pack(self, obj: Any) -> bytes:
        self.depth += 1
        if self.depth > self.max_depth:
            raise FOBSError(_too_deep(self.max_depth))
        try:
            packed: bytes = msgpack.packb(  # msgpack has no type hints
                obj,
                default=self.default,
                use_bin_type=True,
                strict_types=True,
                unicode_errors="surrogatepass",
                datetime=False,
            )
            return packed
        finally:
            self.depth -= 1

    def default(self, obj: Any) -> msgpack.ExtType:
        cls = type(obj)
        if cls is tuple:
            return msgpack.ExtType(EXT_TUPLE, self.pack(list(obj)))
        if cls is set:
            return msgpack.ExtType(EXT_SET, self.pack(list(obj)))
        if cls is frozenset:
            return msgpack.ExtType(EXT_FROZENSET, self.pack(list(obj)))
        if cls is int:
            return msgpack.ExtType(EXT_BIGINT, _bigint_bytes(obj))
        if cls is Buffer:
            self.buffers.append(obj.data)
            return msgpack.ExtType(EXT_BUFFER, struct.pack("<Q", len(self.buffers) - 1))
        name, dec = self.table.for_type(cls)
        try:
            data = dec.decompose(obj, self.ctx)
        except FOBSError:
            raise
        except Exception as exc:
            raise FOBSError(f"decomposer for {name} failed: {type(exc).__name__}: {exc}") from exc
        return msgpack.ExtType(EXT_OBJECT, self.pack([name, data]))


def _too_deep(limit: int) -> str:
    return (
        f"tuples, sets or objects nest deeper than fobs.max_depth={limit}; "
        "raise it (EMBER_FOBS_MAX_DEPTH) if the data is legitimate"
    )


def _bigint_bytes(value: int) -> bytes:
    length = (value + (value < 0)).bit_length() // 8 + 1
    return value.to_bytes(length, "big", signed=True)


class _Decoder:
    def __init__(self, table: DecomposerTable, ctx: Context, buffers: list[memoryview]) -> None:
        self.table = table
        self.ctx = ctx
        self.buffers = buffers
        self.depth = 0
        self.max_depth = int(get_setting("fobs.max_depth"))

    def unpack(self, data: bytes | memoryview) -> Any:
        self.depth += 1
        if self.depth > self.max_depth:
            raise FOBSError(_too_deep(self.max_depth))
        try:
            if self.depth <= _C_STACK_LEVELS:
                return msgpack.unpackb(
                    data,
                    ext_hook=self.ext_hook,
                    raw=False,
                    strict_map_key=False,
                    use_list=True,
                    unicode_errors="surrogatepass",
                    timestamp=0,
                )
            # unpackb keeps a ~40 KiB parse stack on the C stack per call, so ~200 nested
            # tuples would overflow an 8 MiB thread stack (a segfault) before max_depth is
            # reached; deeper levels use a heap-allocated Unpacker instead.
            unpacker = msgpack.Unpacker(
                None,
                ext_hook=self.ext_hook,
                raw=False,
                strict_map_key=False,
                use_list=True,
                unicode_errors="surrogatepass",
                timestamp=0,
                max_buffer_size=max(len(data), 1),
            )
            unpacker.feed(data)
            obj = unpacker.unpack()
            if unpacker.tell() != len(data):
                raise FOBSError("malformed extension payload: trailing bytes")
            return obj
        finally:
            self.depth -= 1

    def ext_hook(self, code: int, data: bytes) -> Any:
        if code == EXT_TUPLE:
            return tuple(self._list(data, "tuple"))
        if code == EXT_SET:
            return set(self._list(data, "set"))
        if code == EXT_FROZENSET:
            return frozenset(self._list(data, "frozenset"))
        if code == EXT_BIGINT:
            if not data:
                raise FOBSError("malformed big integer: no bytes")
            value = int.from_bytes(data, "big", signed=True)
            if _INT64_MIN <= value <= _UINT64_MAX:
                raise FOBSError("malformed big integer: value fits a native integer")
            return value
        if code == EXT_BUFFER:
            if len(data) != 8:
                raise FOBSError("malformed buffer reference")
            (index,) = struct.unpack("<Q", data)
            if index >= len(self.buffers):
                raise FOBSError(
                    f"buffer reference {index} out of range ({len(self.buffers)} buffers)"
                )
            return self.buffers[index]
        if code == EXT_OBJECT:
            return self._object(data)
        raise FOBSError(f"unknown FOBS extension type {code}")

    def _list(self, data: bytes, what: str) -> list[Any]:
        items = self.unpack(data)
        if not isinstance(items, list):
            raise FOBSError(f"malformed {what}")
        return items

    def _object(self, data: bytes) -> Any:
        pair = self.unpack(data)
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise FOBSError("malformed object: expected [type name, data]")
        name, payload = pair
        dec = self.table.by_name(name)
        if dec is None:
            raise FOBSError(
                f"message names type {name!r}, which no registered decomposer claims; "
                f"register a decomposer for it on the receiving side (known: "
                f"{', '.join(self.table.names())})"
            )
        try:
            return dec.recompose(payload, self.ctx)
        except FOBSError:
            raise
        except Exception as exc:
            raise FOBSError(f"cannot rebuild {name}: {type(exc).__name__}: {exc}") from exc


def _encode(obj: Any, ctx: Context | None) -> tuple[bytes, list[memoryview], bytes]:
    enc = _Encoder(get_table(), ctx or Context())
    try:
        body = enc.pack(obj)
    except FOBSError:
        raise
    except (ValueError, OverflowError, TypeError, UnicodeError, RecursionError) as exc:
        raise FOBSError(
            f"cannot serialize {type(obj).__name__}: {exc} (cyclic or too deeply "
            "nested data, or an unsupported value)"
        ) from exc
    header = _PREAMBLE.pack(MAGIC, VERSION, len(body), len(enc.buffers))
    header += struct.pack(f"<{len(enc.buffers)}Q", *(b.nbytes for b in enc.buffers))
    return header, enc.buffers, body


def _frame_parts(obj: Any, ctx: Context | None) -> list[bytes | memoryview]:
    header, buffers, body = _encode(obj, ctx)
    parts: list[bytes | memoryview] = [header, body]
    offset = len(header) + len(body)
    for buf in buffers:
        parts.append(b"\0" * _pad(offset))
        offset += _pad(offset)
        parts.append(buf)
        offset += buf.nbytes
    return parts


def dumps(obj: Any, *, ctx: Context | None = None) -> bytes:
    """Serialize ``obj`` to one FOBS frame."""
    return b"".join(_frame_parts(obj, ctx))


def dump(obj: Any, stream: IO[bytes], *, ctx: Context | None = None) -> int:
    """Write ``obj`` to a binary stream without building the frame in memory; returns its size."""
    written = 0
    for part in _frame_parts(obj, ctx):
        stream.write(part)
        written += len(part) if isinstance(part, bytes) else part.nbytes
    return written


def dumpf(obj: Any, path: str | Any, *, ctx: Context | None = None) -> int:
    """Write ``obj`` to the file at ``path``; returns the number of bytes written."""
    with open(path, "wb") as f:
        return dump(obj, f, ctx=ctx)


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except FOBSError:
        raise
    except RecursionError as exc:
        raise FOBSError("message nests too deeply") from exc
    except MemoryError as exc:
        raise FOBSError("message declares more memory than is available") from exc
    except Exception as exc:
        raise FOBSError(f"malformed FOBS message: {type(exc).__name__}: {exc}") from exc


def _parse_preamble(head: bytes | memoryview) -> tuple[int, int]:
    magic, version, body_len, nbuf = _PREAMBLE.unpack(head)
    if magic != MAGIC:
        raise FOBSError(f"not a FOBS message (starts with {bytes(magic)!r})")
    if version != VERSION:
        raise FOBSError(
            f"FOBS format version {version} is not supported (this is version {VERSION})"
        )
    return body_len, nbuf


def loads(data: bytes | bytearray | memoryview, *, ctx: Context | None = None) -> Any:
    """Deserialize one FOBS frame. Arrays are views over ``data`` (writable if it is)."""
    return _guard(lambda: _loads(data, ctx))


def _loads(data: bytes | bytearray | memoryview, ctx: Context | None) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FOBSError(f"FOBS decodes bytes-like objects, not {type(data).__name__}")
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    total = len(view)
    if total < _PREAMBLE.size:
        raise FOBSError(f"truncated FOBS message: {total} bytes")
    body_len, nbuf = _parse_preamble(view[: _PREAMBLE.size])
    table_end = _PREAMBLE.size + 8 * nbuf
    if table_end > total or body_len > total - table_end:
        raise FOBSError("truncated FOBS message: header declares more bytes than it has")
    lengths = struct.unpack(f"<{nbuf}Q", view[_PREAMBLE.size : table_end])
    body = view[table_end : table_end + body_len]
    offset = table_end + body_len
    buffers: list[memoryview] = []
    for length in lengths:
        offset += _pad(offset)
        if length > total - offset:
            raise FOBSError("truncated FOBS message: a buffer runs past the end")
        buffers.append(view[offset : offset + length])
        offset += length
    if offset != total:
        raise FOBSError(f"malformed FOBS message: {total - offset} unexpected trailing bytes")
    return _Decoder(get_table(), ctx or Context(), buffers).unpack(body)


def load(stream: IO[bytes], *, ctx: Context | None = None) -> Any:
    """Read one frame from a binary stream; arrays land in fresh, writable buffers."""
    return _guard(lambda: _load(stream, ctx))


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise FOBSError(f"truncated FOBS stream: wanted {n} bytes, got {len(data or b'')}")
    return data


_CHUNK = 64 << 20


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left in a seekable stream (a file), or None when it cannot tell."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


def _read_buffer(stream: IO[bytes], length: int, size_known: bool) -> memoryview:
    """Read one buffer into fresh writable memory. A large buffer on a stream whose size is
    unknown grows chunk by chunk, so a lying header cannot make us allocate what never comes."""
    if length <= _CHUNK or size_known:
        buf = bytearray(length)
        view = memoryview(buf)
        got = 0
        while got < length:
            n = stream.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise FOBSError(f"truncated FOBS stream: a buffer of {length} bytes ended at {got}")
            got += n
        return view
    grown = bytearray()
    while len(grown) < length:
        part = stream.read(min(_CHUNK, length - len(grown)))
        if not part:
            raise FOBSError(
                f"truncated FOBS stream: a buffer of {length} bytes ended at {len(grown)}"
            )
        grown += part
    return memoryview(grown)


def _load(stream: IO[bytes], ctx: Context | None) -> Any:
    body_len, nbuf = _parse_preamble(_read_exact(stream, _PREAMBLE.size))
    limit = int(get_setting("fobs.max_message_bytes"))
    if nbuf * 8 + body_len > limit:
        raise FOBSError(f"FOBS stream declares more than fobs.max_message_bytes={limit}")
    lengths = struct.unpack(f"<{nbuf}Q", _read_exact(stream, 8 * nbuf))
    if sum(lengths) + body_len > limit:
        raise FOBSError(
            f"FOBS stream declares {sum(lengths) + body_len} bytes, more than "
            f"fobs.max_message_bytes={limit}; raise it (EMBER_FOBS_MAX_MESSAGE_BYTES) if intended"
        )
    remaining = _remaining(stream)
    if remaining is not None and body_len + sum(lengths) > remaining:
        raise FOBSError(
            f"truncated FOBS stream: the header declares {body_len + sum(lengths)} more bytes, "
            f"the stream has {remaining}"
        )
    body = _read_exact(stream, body_len)
    offset = _PREAMBLE.size + 8 * nbuf + body_len
    buffers: list[memoryview] = []
    for length in lengths:
        _read_exact(stream, _pad(offset))
        offset += _pad(offset)
        buffers.append(_read_buffer(stream, length, remaining is not None))
        offset += length
    return _Decoder(get_table(), ctx or Context(), buffers).unpack(body)


def loadf(path: str | Any, *, ctx: Context | None = None) -> Any:
    """Read one frame from the file at ``path``."""
    try:
        with open(path, "rb") as f:
            return load(f, ctx=ctx)
    except OSError as exc:  # load() itself raises only FOBSError
        raise FOBSError(f"cannot open FOBS file {path}: {exc.strerror}") from exc
