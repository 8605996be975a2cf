"""hello-sklearn, k-means: round 0 sends this site's own k-means++ centres and counts;
later rounds send per-centre sums and counts of its iris points (kmeans_step does both)."""

import argparse

from data import iris_site

import ember.client as flare
from ember_sklearn import client as sk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sites", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    flare.init()
    x = iris_site(flare.get_site_name(), args.n_sites, args.seed)
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        flare.send(sk.kmeans_step(model, x))


if __name__ == "__main__":
    main()
