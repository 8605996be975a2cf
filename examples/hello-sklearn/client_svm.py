"""hello-sklearn, SVM: fit an SVC on this site's breast_cancer shard and send its support
vectors; then report the accuracy of the server's global SVM on the local test part."""

import argparse
import sys

import numpy as np
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
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        spec = sk.model_spec(model)
        if flare.is_train():
            svc = sk.build_estimator(spec).fit(x_train, y_train)
            local = {"local_accuracy": float(svc.score(x_test, y_test))}
            sys.stdout.write(f"{site}: {len(svc.support_)} support vectors, local accuracy "
                             f"{local['local_accuracy']:.4f}\n")
            flare.send(
                FLModel(
                    params_type=ParamsType.FULL,
                    params=sk.support_params(svc, y_train),
                    metrics=local,
                    meta={sk.NUM_STEPS_CURRENT_ROUND: len(x_train)},
                )
            )
        elif flare.is_evaluate():
            predicted = sk.svm_predict(model.params, spec, x_test)
            accuracy = float(np.mean(predicted == y_test))
            flare.send(FLModel(metrics={"accuracy": accuracy},
                               meta={sk.NUM_STEPS_CURRENT_ROUND: len(x_test)}))


if __name__ == "__main__":
    main()
