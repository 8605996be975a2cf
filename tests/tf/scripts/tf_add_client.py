"""Deterministic: site-k sends every received weight + k (NVFlare's Keras convention), weight k."""

import numpy as np

import ember.client as flare
from ember.client import FLModel

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    params = model.params  # {layer name: [arrays]}
    if not all(isinstance(v, list) for v in params.values()):
        raise RuntimeError(f"expected per-layer lists, got {[type(v) for v in params.values()]}")
    flare.send(
        FLModel(
            params={name: [np.asarray(w) + k for w in weights] for name, weights in params.items()},
            metrics={"accuracy": 0.5 + k / 10},
            meta={flare.NUM_STEPS_CURRENT_ROUND: k},
        )
    )
