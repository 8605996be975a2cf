"""The commutative blinding of private set intersection: ECDH over P-256.

An id is hashed onto the curve (:func:`hash_to_point`) and blinded by a site's secret
scalar ``k`` (:meth:`Blinder.blind`: the x-coordinate of ``k * P``); blinding an
already blinded value with another key commutes, ``x(a * x(b * P)) == x(b * x(a * P))``,
so a value blinded by every site's key is the same for the same id whichever order the
keys were applied in, while without the keys nothing links it to the id (the decisional
Diffie-Hellman assumption on P-256, with the hash modelled as a random oracle).

Why P-256 and not X25519: P-256's group has prime order (cofactor 1), so every hashed
point and every blinded value lies in one prime-order group, and try-and-increment over
x-coordinates hashes uniformly onto it; OpenSSL decodes (and so validates) every point.
X25519 takes any 32 bytes as a u-coordinate: a hashed u lands on the curve or on its
twist, half and half, and scalar multiplication keeps that side, so each blinded value
would give away one bit of its id to anyone who knows the salt (Elligator 2 would fix
it, at a Python-level square root per id). Only ``cryptography``'s public ECDH is used:
no arithmetic on points is written here.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from ember.errors import EmberError

#: bytes of one blinded value (a P-256 x-coordinate)
VALUE_BYTES = 32
#: bytes of the per-session salt
SALT_BYTES = 32
#: domain separation of the hash onto the curve
_DST = b"ember-psi-v1:P-256:try-and-increment:"
_CURVE = ec.SECP256R1()
_ECDH = ec.ECDH()
_EVEN_Y = b"\x02"  # a compressed point's prefix: the x-coordinate with the even y
_MAX_TRIES = 256  # each try fails with probability ~1/2: 256 failures never happen


class PSICryptoError(EmberError, ValueError):
    """A value that cannot be blinded: not 32 bytes, or not a point of P-256."""


def new_salt() -> bytes:
    """A fresh random salt for one session."""
    return secrets.token_bytes(SALT_BYTES)


def _point(x: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 point with x-coordinate ``x`` (and even y); ValueError when none."""
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, _EVEN_Y + x)


def hash_to_point(salt: bytes, item: str) -> ec.EllipticCurvePublicKey:
    """``item`` hashed onto P-256 under ``salt``: SHA-256 of the domain tag, the salt, the
    id's length and UTF-8 bytes and a counter, the first that is a point's x-coordinate
    (about two tries on average; OpenSSL checks each candidate)."""
    data = item.encode("utf-8")
    base = hashlib.sha256(_DST + salt + len(data).to_bytes(8, "big") + data)
    for counter in range(_MAX_TRIES):
        digest = base.copy()
        digest.update(counter.to_bytes(2, "big"))
        try:
            return _point(digest.digest())
        except ValueError:
            continue
    raise PSICryptoError(f"no curve point for an id after {_MAX_TRIES} tries")  # pragma: no cover


class Blinder:
    """One site's secret blinding key for one session (fresh each time it is made)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(_CURVE)

    def blind_items(self, salt: bytes, items: list[str]) -> np.ndarray:
        """``items`` hashed onto the curve and blinded, in order: a ``(n, 32)`` uint8 array."""
        out = np.empty((len(items), VALUE_BYTES), dtype=np.uint8)
        for i, item in enumerate(items):
            out[i] = np.frombuffer(self._key.exchange(_ECDH, hash_to_point(salt, item)), np.uint8)
        return out

    def blind(self, values: np.ndarray) -> np.ndarray:
        """Blinded values (one per row of a ``(n, 32)`` uint8 array) blinded again with this
        key, in order."""
        values = check_values(values)
        out = np.empty_like(values)
        for i, row in enumerate(values):
            try:
                point = _point(row.tobytes())
            except ValueError:
                raise PSICryptoError(
                    f"value {i} is not a P-256 x-coordinate: the list was not blinded by "
                    "Ember's PSI"
                ) from None
            out[i] = np.frombuffer(self._key.exchange(_ECDH, point), np.uint8)
        return out


def check_values(values: object) -> np.ndarray:
    """``values`` as a C-contiguous ``(n, 32)`` uint8 array (PSICryptoError otherwise)."""
    if (
        not isinstance(values, np.ndarray)
        or values.dtype != np.uint8
        or values.ndim != 2
        or values.shape[1] != VALUE_BYTES
    ):
        shape = getattr(values, "shape", None)
        dtype = getattr(values, "dtype", type(values).__name__)
        raise PSICryptoError(
            f"blinded values must be an (n, {VALUE_BYTES}) uint8 array, got {dtype} {shape}"
        )
    return np.ascontiguousarray(values)
