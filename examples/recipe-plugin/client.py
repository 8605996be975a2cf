"""recipe-plugin example client: each round, "train" by moving every weight.

site-N moves every weight by N (site-1 by 1, site-2 by 2); the outlier site (``--outlier``,
default site-3) moves it by ``--outlier-shift`` (default 100), as a broken or malicious site
might. Under FedAvg the outlier drags the global model along; under the median it does not.
"""

import argparse

import numpy as np

import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType


def shift_of(site: str, outlier: str, outlier_shift: float) -> float:
    """How far this site moves the weights each round."""
    if site == outlier:
        return outlier_shift
    number = site.rsplit("-", 1)[-1]
    return float(number) if number.isdigit() else 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outlier", default="site-3", help="the site that sends a wild model")
    parser.add_argument("--outlier-shift", type=float, default=100.0)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    shift = shift_of(site, args.outlier, args.outlier_shift)
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        weights = model.params[NUMPY_KEY]
        new_weights = weights + np.asarray(shift, dtype=weights.dtype)
        print(f"{site}: round {model.current_round}, moving every weight by {shift:g}")
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params={NUMPY_KEY: new_weights},
                metrics={"weight_mean": float(np.mean(new_weights))},
                meta={flare.NUM_STEPS_CURRENT_ROUND: 1},
            )
        )


if __name__ == "__main__":
    main()
