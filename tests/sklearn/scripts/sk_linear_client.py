"""Linear test client: records what it receives and sends under its workspace."""

import argparse
import json
from pathlib import Path

import numpy as np
from sk_data import site_data

import ember.client as flare
from ember.client import FLModel, ParamsType
from ember_sklearn import client as sk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="breast_cancer")
    parser.add_argument("--fractions", default="[0.5, 0.3, 0.2]")
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    out = Path(flare.get_config()["workspace"])
    x, y = site_data(args.dataset, site, json.loads(args.fractions))
    estimator = spec = None
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        rnd = model.current_round
        spec = sk.model_spec(model)
        estimator = estimator or sk.build_estimator(spec)
        (out / "spec.json").write_text(json.dumps(spec))
        np.savez(out / f"received_{rnd}.npz", **model.params)
        sk.set_linear_params(estimator, model.params, spec)
        score = float(estimator.score(x, y))
        estimator.fit(x, y)
        params = sk.get_linear_params(estimator)
        np.savez(out / f"sent_{rnd}.npz", n_samples=len(x), **params)
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params=params,
                metrics={"accuracy": score},
                meta={sk.NUM_STEPS_CURRENT_ROUND: len(x)},
            )
        )


if __name__ == "__main__":
    main()
