"""Errors of the download service."""

from __future__ import annotations


class StreamingError(RuntimeError):
    """A download failed: expired or unknown transaction, corrupt data, retries exhausted."""
