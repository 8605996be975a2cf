"""Which gateway a device talks to: rendezvous (highest-random-weight) hashing.

Every device id is scored against every gateway name with a keyed hash; the device goes to
the gateway with the highest score. Adding one gateway to ``N`` moves only the devices the
new gateway now wins, about ``1/(N+1)`` of them, and none between the old gateways; removing
one moves only that gateway's devices. No table to share: any device, load balancer or the
HTTP-mode simulator computes the same answer from the list of gateway names.

Gateways do not refuse a device that hashes elsewhere (docs in packages/edge/README.md): the
list of gateways a device knows may be older or newer than the job's, and a device that
registered at one gateway keeps working there for the rest of the job; the hash is how
devices and the simulator *choose*, not a rule a gateway enforces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def score(device_id: str, gateway: str) -> int:
    """The device's weight at ``gateway``: 64 bits of BLAKE2b over both names."""
    data = gateway.encode("utf-8") + b"\0" + device_id.encode("utf-8")
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def gateway_for(device_id: str, gateways: Sequence[str]) -> str:
    """The gateway (one of ``gateways``, by name) that ``device_id`` talks to."""
    if not gateways:
        raise ValueError("gateway_for needs at least one gateway name")
    # a tie (practically impossible) goes to the larger name, so every caller agrees
    return max(gateways, key=lambda g: (score(device_id, g), g))


def assign(device_ids: Sequence[str], gateways: Sequence[str]) -> dict[str, list[str]]:
    """``{gateway: [device ids]}`` for every gateway (in ``gateways`` order)."""
    out: dict[str, list[str]] = {g: [] for g in gateways}
    for device in device_ids:
        out[gateway_for(device, gateways)].append(device)
    return out


__all__ = ["assign", "gateway_for", "score"]
