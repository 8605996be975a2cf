"""The one error FOBS raises."""

from __future__ import annotations


class FOBSError(ValueError):
    """Serialization or deserialization failed: unsupported type, unknown type name,
    malformed or truncated bytes. Decoding raises this and nothing else."""
