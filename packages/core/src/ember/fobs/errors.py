"""The one error FOBS raises."""

from __future__ import annotations

from ember.errors import EmberError


class FOBSError(EmberError, ValueError):
    """Serialization or deserialization failed: unsupported type, unknown type name,
    malformed or truncated bytes. Decoding raises this and nothing else."""
