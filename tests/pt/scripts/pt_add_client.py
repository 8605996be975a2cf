"""Deterministic: site-k sends the received model + k as torch tensors, weighted by k."""

import torch

import ember.client as flare
from ember.client import FLModel

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if model.meta.get("model_class") != {"path": "pt_tiny.TinyNet", "args": {"width": 3}}:
        raise RuntimeError(f"unexpected model_class {model.meta.get('model_class')!r}")
    state = model.params  # a pytorch recipe's script receives a state_dict of tensors
    if not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise RuntimeError(f"expected tensors, got {[type(t) for t in state.values()]}")
    flare.send(
        FLModel(
            params={name: t + k for name, t in state.items()},
            metrics={"accuracy": 0.5},
            meta={flare.NUM_STEPS_CURRENT_ROUND: k},
        )
    )
