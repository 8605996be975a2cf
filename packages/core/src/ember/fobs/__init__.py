"""FOBS: Ember's pickle-free serialization.

``dumps``/``loads`` for bytes, ``dump``/``load`` for binary streams, ``dumpf``/``loadf`` for
files. Types beyond the msgpack natives decode only when a registered decomposer claims
their name; see ``docs/architecture.md`` for the wire format.
"""

from __future__ import annotations

from typing import Any

from ember.fobs.codec import dump, dumpf, dumps, load, loadf, loads
from ember.fobs.decomposer import Buffer, Context, Decomposer, type_name
from ember.fobs.errors import FOBSError
from ember.fobs.table import get_table


def register(target: Any) -> Any:
    """Register a decomposer, an Enum class or a dataclass; returns ``target``.

    Usable as a class decorator. Both sides of a conversation must register the type.
    """
    get_table().register(target)
    return target


serializable = register

__all__ = [
    "Buffer",
    "Context",
    "Decomposer",
    "FOBSError",
    "dump",
    "dumpf",
    "dumps",
    "load",
    "loadf",
    "loads",
    "register",
    "serializable",
    "type_name",
]
