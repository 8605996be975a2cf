"""ember-edge: hierarchical, asynchronous federated learning for fleets of devices.

- :class:`EdgeFedBuffRecipe` (``ember_edge.recipes``, with :class:`ModelManagerConfig`,
  :class:`DeviceManagerConfig`, :class:`SimulationConfig`, :class:`EvaluatorConfig`).
- :class:`FedBuffController`: the server's workflow; :class:`EdgeSiteLink`: the aggregator
  sites' site workflow.
- :class:`FedBuff`, :class:`FedBuffConfig`: the algorithm, framework-free (``ember_edge.fedbuff``).
- :class:`DeviceTaskProcessor`, :class:`DeviceTask`, :class:`DeviceResult`: a simulated
  device (``ember_edge.simulator``).
- :class:`ETFedBuffRecipe` (``ember_edge.recipes``): FedBuff for ExecuTorch devices
  (``ember-edge[et]``; ``ember_edge.executorch``).
- :class:`TorchDeviceProcessor`: the base of a simulated device that trains a PyTorch model
  (``ember_edge.torch_devices``, imports torch).
- :class:`GatewayConfig` (real devices), :class:`DeviceGateway`, :class:`DeviceAuthenticator`,
  :class:`HmacDeviceTokens` (``ember_edge.gateway``): the HTTP device gateway;
  :class:`HttpDeviceSimulator` (``ember_edge.http_devices``): the simulator's HTTP mode;
  :func:`gateway_for` (``ember_edge.routing``): rendezvous hashing of devices to gateways.

Importing this package imports none of them until used (the plugin hook module is loaded
by every Ember process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember_edge.controller import FedBuffController
    from ember_edge.fedbuff import FedBuff, FedBuffConfig, FedBuffError
    from ember_edge.gateway import DeviceAuthenticator, DeviceGateway, HmacDeviceTokens
    from ember_edge.http_devices import HttpDeviceSimulator
    from ember_edge.recipes import (
        DeviceManagerConfig,
        EdgeFedBuffRecipe,
        ETFedBuffRecipe,
        EvaluatorConfig,
        GatewayConfig,
        ModelManagerConfig,
        SimulationConfig,
    )
    from ember_edge.routing import gateway_for
    from ember_edge.simulator import DeviceResult, DeviceTask, DeviceTaskProcessor
    from ember_edge.site import EdgeSiteLink
    from ember_edge.torch_devices import TorchDeviceProcessor

__all__ = [
    "DeviceAuthenticator",
    "DeviceGateway",
    "DeviceManagerConfig",
    "DeviceResult",
    "DeviceTask",
    "DeviceTaskProcessor",
    "ETFedBuffRecipe",
    "EdgeFedBuffRecipe",
    "EdgeSiteLink",
    "EvaluatorConfig",
    "FedBuff",
    "FedBuffConfig",
    "FedBuffController",
    "FedBuffError",
    "GatewayConfig",
    "HmacDeviceTokens",
    "HttpDeviceSimulator",
    "ModelManagerConfig",
    "SimulationConfig",
    "TorchDeviceProcessor",
    "gateway_for",
]

_LAZY = {
    "FedBuffController": "ember_edge.controller",
    "FedBuff": "ember_edge.fedbuff",
    "FedBuffConfig": "ember_edge.fedbuff",
    "FedBuffError": "ember_edge.fedbuff",
    "DeviceManagerConfig": "ember_edge.recipes",
    "EdgeFedBuffRecipe": "ember_edge.recipes",
    "ETFedBuffRecipe": "ember_edge.recipes",
    "EvaluatorConfig": "ember_edge.recipes",
    "GatewayConfig": "ember_edge.recipes",
    "DeviceAuthenticator": "ember_edge.gateway",
    "DeviceGateway": "ember_edge.gateway",
    "HmacDeviceTokens": "ember_edge.gateway",
    "HttpDeviceSimulator": "ember_edge.http_devices",
    "gateway_for": "ember_edge.routing",
    "ModelManagerConfig": "ember_edge.recipes",
    "SimulationConfig": "ember_edge.recipes",
    "DeviceResult": "ember_edge.simulator",
    "DeviceTask": "ember_edge.simulator",
    "DeviceTaskProcessor": "ember_edge.simulator",
    "EdgeSiteLink": "ember_edge.site",
    "TorchDeviceProcessor": "ember_edge.torch_devices",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ember_edge' has no attribute {name!r}")
