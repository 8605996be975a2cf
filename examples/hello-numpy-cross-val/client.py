"""hello-numpy-cross-val site script: trains (adds 1) and answers cross-site evaluation.

Each site's "data" is a target array of its own (site-N: every entry N); a model scores
``accuracy = 1 / (1 + mean |w - target|)``: 1.0 for a perfect fit, so the matrix shows
which model suits which site.
"""

import numpy as np

import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType


def evaluate(weights: np.ndarray, target: float) -> float:
    return float(1.0 / (1.0 + np.mean(np.abs(weights - target))))


def main() -> None:
    flare.init()
    site = flare.get_site_name()
    target = float(site.rsplit("-", 1)[-1])
    local_weights = None
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():  # cross-site evaluation asks for this site's own model
            flare.send(FLModel(params_type=ParamsType.FULL, params={NUMPY_KEY: local_weights}))
            continue
        weights = model.params[NUMPY_KEY]
        if flare.is_evaluate():
            flare.send(FLModel(metrics={"accuracy": evaluate(weights, target)}))
            continue
        local_weights = weights + 1  # stand-in for local training
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params={NUMPY_KEY: local_weights},
                metrics={"accuracy": evaluate(weights, target)},
                meta={flare.NUM_STEPS_CURRENT_ROUND: 1},
            )
        )


if __name__ == "__main__":
    main()
