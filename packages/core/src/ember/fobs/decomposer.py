"""The decomposer protocol: how FOBS serializes a type it does not know natively."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


def type_name(cls: type) -> str:
    """The wire name of a type: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass
class Context:
    """Passed to every ``decompose``/``recompose`` call of one ``dumps``/``loads``.

    ``props`` carries what the caller supplies (a later transport puts its downloader here).
    """

    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Buffer:
    """Raw bytes a decomposer wants carried out of line, without copying them into the body.

    ``recompose`` receives them as a ``memoryview`` over the decoded message (read-only
    when the message is ``bytes``, writable when it is a ``bytearray`` or was read from a
    stream).
    """

    data: memoryview


@runtime_checkable
class Decomposer(Protocol):
    """Turns one type into FOBS-serializable data and back.

    ``decompose`` may return anything FOBS can serialize, including other registered types
    and :class:`Buffer` objects. ``recompose`` gets that data back and must validate it:
    it comes off the wire. A decomposer may set ``match_subclasses = True`` to also handle
    subclasses of its type (they decode as whatever ``recompose`` returns).
    """

    def supported_type(self) -> type:
        """The type this decomposer handles; its wire name is ``type_name(supported_type())``."""
        ...

    def decompose(self, obj: Any, ctx: Context) -> Any:
        """Return serializable data for ``obj``."""
        ...

    def recompose(self, data: Any, ctx: Context) -> Any:
        """Rebuild the object from what ``decompose`` returned."""
        ...
