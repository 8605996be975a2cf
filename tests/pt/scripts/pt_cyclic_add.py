"""Cyclic test script: site-k adds k to every tensor it receives and reports what it got.

``--fail site-2:1`` makes site-2 raise when it receives its round-1 task.
"""

import argparse

import torch

import ember.client as flare
from ember.client import FLModel

parser = argparse.ArgumentParser()
parser.add_argument("--fail", default="")
args = parser.parse_args()

flare.init()
site = flare.get_site_name()
k = int(site.rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if not flare.is_train():
        raise RuntimeError("cyclic sends only train tasks")
    if args.fail == f"{site}:{model.current_round}":
        raise RuntimeError(f"planned failure on {site} in round {model.current_round}")
    if model.meta.get("model_class") != {"path": "pt_tiny.TinyNet", "args": {"width": 3}}:
        raise RuntimeError(f"unexpected model_class {model.meta.get('model_class')!r}")
    position = model.meta["cyclic_position"]
    if model.meta["cyclic_order"][position] != site:
        raise RuntimeError(f"{site} is not at position {position} of {model.meta['cyclic_order']}")
    state = model.params
    if not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise RuntimeError(f"expected tensors, got {[type(t) for t in state.values()]}")
    flare.send(
        FLModel(
            params={name: t + k for name, t in state.items()},
            metrics={
                "received_sum": float(sum(float(t.sum()) for t in state.values())),
                "position": position,
                "round": model.current_round,
            },
        )
    )
