"""Deterministic swarm client: site-k sends the received model + k, weighted by k, and
records what it received (sum of the weights) as a metric."""

import torch

import ember.client as flare
from ember.client import FLModel

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    state = model.params
    if not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise RuntimeError(f"expected tensors, got {[type(t) for t in state.values()]}")
    received = float(sum(t.double().sum() for t in state.values()))
    flare.send(
        FLModel(
            params={name: t + k for name, t in state.items()},
            metrics={"received_sum": received, "site": float(k)},
            meta={flare.NUM_STEPS_CURRENT_ROUND: k},
        )
    )
