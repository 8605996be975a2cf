"""SVM test client: records the support vectors it sends and its evaluation."""

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
    out = Path(flare.get_config()["workspace"])
    x, y = site_data(args.dataset, flare.get_site_name(), json.loads(args.fractions))
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        spec = sk.model_spec(model)
        if flare.is_train():
            svc = sk.build_estimator(spec).fit(x, y)
            params = sk.support_params(svc, y)
            np.savez(out / "sent.npz", **params)
            flare.send(FLModel(params_type=ParamsType.FULL, params=params))
        elif flare.is_evaluate():
            accuracy = float(np.mean(sk.svm_predict(model.params, spec, x) == y))
            (out / "eval.json").write_text(json.dumps({"accuracy": accuracy, "n": len(x)}))
            flare.send(FLModel(metrics={"accuracy": accuracy},
                               meta={sk.NUM_STEPS_CURRENT_ROUND: len(x)}))


if __name__ == "__main__":
    main()
