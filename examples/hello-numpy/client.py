"""hello-numpy client: each round, receive the global model, "train" (add 1), send it back."""

import numpy as np

import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType
from ember.client.tracking import SummaryWriter


def train(weights: np.ndarray) -> np.ndarray:
    """Stand-in for local training: every weight moves by 1."""
    return weights + 1


def evaluate(weights: np.ndarray) -> float:
    """A made-up metric that grows as the weights do."""
    return float(np.mean(weights))


def main() -> None:
    flare.init()
    site = flare.get_site_name()
    writer = SummaryWriter()
    local_weights = None
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_submit_model():  # cross-site evaluation asks for this site's own model
            flare.send(FLModel(params_type=ParamsType.FULL, params={NUMPY_KEY: local_weights}))
            continue
        weights = model.params[NUMPY_KEY]
        metrics = {"weight_mean": evaluate(weights)}
        if flare.is_evaluate():
            flare.send(FLModel(metrics=metrics))
            continue
        new_weights = local_weights = train(weights)
        writer.add_scalar("weight_mean", metrics["weight_mean"], model.current_round)
        print(f"{site}: round {model.current_round}, mean weight {metrics['weight_mean']:.2f}")
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params={NUMPY_KEY: new_weights},
                metrics=metrics,
                current_round=model.current_round,
                meta={flare.NUM_STEPS_CURRENT_ROUND: 1},
            )
        )


if __name__ == "__main__":
    main()
