"""k-means test client: records each round's task and answer under its workspace."""

import argparse
import json
from pathlib import Path

import numpy as np
from sk_data import site_data

import ember.client as flare
from ember_sklearn import client as sk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fractions", default="[0.5, 0.3, 0.2]")
    args = parser.parse_args()

    flare.init()
    out = Path(flare.get_config()["workspace"])
    x, _ = site_data("iris", flare.get_site_name(), json.loads(args.fractions))
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        rnd = model.current_round
        if model.params:
            np.savez(out / f"received_{rnd}.npz", **model.params)
        answer = sk.kmeans_step(model, x)
        np.savez(out / f"sent_{rnd}.npz", **answer.params)
        (out / f"sent_{rnd}.json").write_text(json.dumps(
            {"phase": model.meta[sk.PHASE_KEY], "metrics": answer.metrics,
             "weight": answer.meta[sk.NUM_STEPS_CURRENT_ROUND]}
        ))
        flare.send(answer)


if __name__ == "__main__":
    main()
