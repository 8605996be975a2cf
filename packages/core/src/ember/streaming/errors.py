"""Errors of the download service."""

from __future__ import annotations

from ember.errors import EmberError


class StreamingError(EmberError, RuntimeError):
    """A download failed: expired or unknown transaction, corrupt data, retries exhausted."""


class LinkBroken(EmberError):
    """A direct data link failed during a request (closed, timed out, malformed reply): the
    pull goes on through the hub. ``offset``: how far an item's bytes were delivered; ``size``:
    the item's size, when the owner had said it."""

    def __init__(self, reason: str, offset: int = 0, size: int | None = None) -> None:
        super().__init__(reason)
        self.offset = offset
        self.size = size
