"""ember-edge: hierarchical, asynchronous federated learning for fleets of devices.

- :class:`FedBuff`, :class:`FedBuffConfig`: the algorithm, framework-free (``ember_edge.fedbuff``).
"""

from __future__ import annotations

from ember_edge.fedbuff import FedBuff, FedBuffConfig, FedBuffError

__all__ = ["FedBuff", "FedBuffConfig", "FedBuffError"]
