"""CKKS (TenSEAL) contexts and encrypted arrays for HE FedAvg.

An encrypted layer travels as an ordinary ``uint8`` numpy array (so FOBS, the downloader and
the persistors carry it like any other array, and nothing is pickled): ``MAGIC``, a 4-byte
little-endian header length, a JSON header (``key``: the key id, ``shape``, ``dtype``,
``chunks``: the byte length of each ciphertext) and TenSEAL's own serialization of each
ciphertext (``CKKSVector.serialize()``), one per ``slots`` values.

The key id is the SHA-256 (first 16 hex digits) of the public context's bytes: the server
and the sites name the same key pair without exchanging anything secret.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np
import tenseal as ts

from ember.errors import EmberError

MAGIC = b"EMHE1"
#: CKKS parameters: 8192 slots/2 per ciphertext, two multiplicative levels (the server's
#: weight and 1/sum of weights), a 40-bit scale: about 1e-6 absolute precision
POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = (60, 40, 40, 60)
GLOBAL_SCALE_BITS = 40


class HEError(EmberError, ValueError):
    """Homomorphic encryption was misconfigured: a missing or wrong key, a layer sent in
    the clear that must be encrypted, a secret key where none may be."""


def new_context(
    poly_modulus_degree: int = POLY_MODULUS_DEGREE,
    coeff_mod_bit_sizes: tuple[int, ...] = COEFF_MOD_BIT_SIZES,
    global_scale_bits: int = GLOBAL_SCALE_BITS,
) -> ts.Context:
    """A fresh CKKS context holding a new secret key."""
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=poly_modulus_degree,
        coeff_mod_bit_sizes=list(coeff_mod_bit_sizes),
    )
    context.global_scale = 2.0**global_scale_bits
    return context


def serialize_context(context: ts.Context, secret: bool) -> bytes:
    """The context's bytes, with its secret key only when ``secret``. No Galois or
    relinearisation keys: HE FedAvg only adds ciphertexts and multiplies them by numbers."""
    data: bytes = context.serialize(
        save_public_key=True,
        save_secret_key=secret,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    return data


def key_id(public_bytes: bytes) -> str:
    """The id of a key pair: from its public context's bytes."""
    return hashlib.sha256(public_bytes).hexdigest()[:16]


def new_key_pair() -> tuple[bytes, bytes, str]:
    """``(secret_context_bytes, public_context_bytes, key_id)`` of a new key pair."""
    context = new_context()
    public = serialize_context(context, secret=False)
    return serialize_context(context, secret=True), public, key_id(public)


def load_context(data: bytes, *, secret: bool, source: str) -> ts.Context:
    """A context from its bytes; ``secret`` says whether it must (True) or must not (False)
    hold the secret key."""
    try:
        context = ts.context_from(data)
    except Exception as exc:  # TenSEAL raises ValueError/RuntimeError on bad bytes
        raise HEError(f"{source} is not a TenSEAL context ({exc})") from None
    if context.is_private() != secret:
        if secret:
            raise HEError(
                f"{source} holds no secret key, so it cannot decrypt; a site needs the "
                "context with the secret key (its kit's startup/he_context.tenseal)"
            )
        raise HEError(
            f"{source} holds the secret key; the server must only ever get the public "
            "context (serialized with save_secret_key=False)"
        )
    return context


def is_encrypted(value: Any) -> bool:
    """Whether ``value`` is an encrypted layer (see the module's docstring)."""
    return (
        isinstance(value, np.ndarray)
        and value.dtype == np.uint8
        and value.ndim == 1
        and value.size > len(MAGIC)
        and bytes(value[: len(MAGIC)]) == MAGIC
    )


def slots(context: ts.Context) -> int:
    """Values per ciphertext."""
    return POLY_MODULUS_DEGREE // 2


def encrypt_array(context: ts.Context, kid: str, array: Any) -> np.ndarray:
    """``array`` (numpy, float) encrypted with ``context``'s public key, as a uint8 array."""
    values = np.asarray(array)
    if values.dtype.kind not in "fiu":
        raise HEError(f"only numeric arrays can be encrypted, not {values.dtype}")
    flat = values.astype(np.float64, copy=False).ravel()
    n = slots(context)
    chunks = (
        [
            ts.ckks_vector(context, flat[i : i + n]).serialize()
            for i in range(0, max(len(flat), 1), n)
        ]
        if len(flat)
        else []
    )
    return pack(kid, values.shape, str(values.dtype), chunks)


def pack(kid: str, shape: tuple[int, ...], dtype: str, chunks: list[bytes]) -> np.ndarray:
    header = json.dumps(
        {"key": kid, "shape": list(shape), "dtype": dtype, "chunks": [len(c) for c in chunks]}
    ).encode()
    data = b"".join([MAGIC, struct.pack("<I", len(header)), header, *chunks])
    return np.frombuffer(data, dtype=np.uint8).copy()


def unpack(value: np.ndarray) -> tuple[dict[str, Any], list[bytes]]:
    """The header and ciphertext bytes of an encrypted layer."""
    data = value.tobytes()
    start = len(MAGIC)
    try:
        (size,) = struct.unpack_from("<I", data, start)
        header = json.loads(data[start + 4 : start + 4 + size])
        offset = start + 4 + size
        chunks = []
        for length in header["chunks"]:
            chunks.append(data[offset : offset + int(length)])
            offset += int(length)
        if offset != len(data) or not isinstance(header["key"], str):
            raise ValueError("length mismatch")
        header["shape"] = tuple(int(d) for d in header["shape"])
        np.dtype(header["dtype"])
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise HEError(f"a malformed encrypted layer ({exc})") from None
    return header, chunks


def vectors(context: ts.Context, chunks: list[bytes]) -> list[ts.CKKSVector]:
    try:
        return [ts.ckks_vector_from(context, c) for c in chunks]
    except Exception as exc:
        raise HEError(f"a ciphertext could not be read with this context ({exc})") from None


def decrypt_array(context: ts.Context, value: np.ndarray) -> np.ndarray:
    """An encrypted layer decrypted with ``context``'s secret key, in its shape and dtype."""
    header, chunks = unpack(value)
    flat = (
        np.concatenate(
            [np.asarray(v.decrypt(), dtype=np.float64) for v in vectors(context, chunks)]
        )
        if chunks
        else np.zeros(0)
    )
    dtype = np.dtype(header["dtype"])
    if dtype.kind in "iu":
        flat = np.rint(flat)
    size = int(np.prod(header["shape"], dtype=np.int64))
    return flat[:size].astype(dtype).reshape(header["shape"])
