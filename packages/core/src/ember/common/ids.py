"""Unguessable ids made without a system call each: task ids, download references.

``os.urandom`` (behind ``uuid.uuid4``) is a system call that releases the GIL; with a
thousand simulated sites in threads, each of them is a hand-off of the interpreter to
another thread and back, and a round made about ten per site. Here one read of the random
source keys a BLAKE2b hash of a counter: ids are as hard to guess as ``uuid4().hex`` (128
bits an outsider cannot predict without the key), in the same 32-hex-digit form, unique
within the process, and a forked child takes a fresh key.
"""

from __future__ import annotations

import hashlib
import itertools
import os

__all__ = ["random_hex_id"]

_key = os.urandom(32)
_counter = itertools.count()


def _rekey() -> None:
    global _key, _counter
    _key = os.urandom(32)
    _counter = itertools.count()


os.register_at_fork(after_in_child=_rekey)


def random_hex_id() -> str:
    """A fresh, unguessable 128-bit id as 32 hex digits (the shape of ``uuid4().hex``)."""
    n = next(_counter)  # itertools.count is atomic: no lock
    return hashlib.blake2b(n.to_bytes(8, "little"), key=_key, digest_size=16).hexdigest()
