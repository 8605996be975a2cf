"""hello-lr client: each round, the gradient and Hessian of this site's log-loss at the
global weights (``ember.newton_raphson.site_result``), and the weights' test accuracy."""

import argparse

from data import accuracy, site_data, test_data

import ember.client as flare
from ember.client import NUMPY_KEY
from ember.newton_raphson import site_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=3)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(site.rsplit("-", 1)[-1]) - 1  # site-1 -> 0
    x, y = site_data(index, args.n_sites)
    x_test, y_test = test_data()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        result = site_result(x, y, model)  # params: gradient, hessian; meta: sample count
        result.metrics["accuracy"] = accuracy(model.params[NUMPY_KEY], x_test, y_test)
        flare.send(result)


if __name__ == "__main__":
    main()
