"""FedEval test script: site-k scores the received model as k x (sum of its weights),
weighted by k. ``--model-name`` is the name the task must carry; ``--fail site-2`` makes
site-2 raise instead of evaluating."""

import argparse

import torch

import ember.client as flare
from ember.client import FLModel

parser = argparse.ArgumentParser()
parser.add_argument("--model-name", required=True)
parser.add_argument("--fail", default="")
args = parser.parse_args()

flare.init()
site = flare.get_site_name()
k = int(site.rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if not flare.is_evaluate():
        raise RuntimeError("fed eval sends only validate tasks")
    if site == args.fail:
        raise RuntimeError(f"planned failure on {site}")
    if model.meta.get("model_name") != args.model_name:
        raise RuntimeError(f"unexpected model_name {model.meta.get('model_name')!r}")
    state = model.params
    if not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise RuntimeError(f"expected tensors, got {[type(t) for t in state.values()]}")
    total = sum(float(t.double().sum()) for t in state.values())
    flare.send(
        FLModel(
            metrics={"score": total * k, "site_index": k, "note": f"evaluated by {site}"},
            meta={flare.NUM_STEPS_CURRENT_ROUND: k},
        )
    )
