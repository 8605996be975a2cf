"""hello-sklearn, linear model: each round, warm-start from the global coef/intercept, fit
on this site's breast_cancer shard, send the params weighted by the number of samples."""

import argparse
import sys

from data import breast_cancer_site

import ember.client as flare
from ember.client import FLModel, ParamsType
from ember_sklearn import client as sk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    x_train, y_train, x_test, y_test = breast_cancer_site(site, args.n_sites, args.seed)
    estimator, spec, local = None, None, None
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():  # cross-site evaluation asks for this site's own model
            flare.send(FLModel(params_type=ParamsType.FULL, params=local))
            continue
        if estimator is None:  # the first task carries the recipe's estimator and params
            spec = sk.model_spec(model)
            estimator = sk.build_estimator(spec)
        sk.set_linear_params(estimator, model.params, spec)
        metrics = {"accuracy": float(estimator.score(x_test, y_test))}  # of the received model
        if flare.is_evaluate():
            flare.send(FLModel(metrics=metrics, meta={sk.NUM_STEPS_CURRENT_ROUND: len(x_test)}))
            continue
        estimator.fit(x_train, y_train)  # warm_start: continues from the global params
        local = sk.get_linear_params(estimator)
        # one write per line: the sites' threads share stdout
        sys.stdout.write(f"{site}: round {model.current_round}, accuracy of the global model "
                         f"{metrics['accuracy']:.4f}\n")
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params=local,
                metrics=metrics,
                meta={sk.NUM_STEPS_CURRENT_ROUND: len(x_train)},
            )
        )


if __name__ == "__main__":
    main()
