"""Deterministic FedOpt site: site-k sends every received weight + k (NVFlare's Keras
convention, ``{layer: [arrays]}``), weighted by k; fails unless the task is a FedOpt one."""

import numpy as np

import ember.client as flare
from ember.client import FLModel

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    params = model.params
    if not all(isinstance(v, list) for v in params.values()):
        raise RuntimeError(f"expected per-layer lists, got {[type(v) for v in params.values()]}")
    flare.send(
        FLModel(
            params={name: [np.asarray(w) + k for w in weights] for name, weights in params.items()},
            metrics={"accuracy": 0.5},
            meta={flare.NUM_STEPS_CURRENT_ROUND: k},
        )
    )
