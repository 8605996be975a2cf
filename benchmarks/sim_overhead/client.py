"""sim_overhead client: each round, receive the global model, add 1, send it back
(with ``--metrics``, also a loss, as an ordinary script would: the job then has a PNG)."""

import sys

import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType


def main() -> None:
    """Answer every task with the received model plus one."""
    flare.init()
    metrics = "--metrics" in sys.argv[1:]
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        weights = model.params[NUMPY_KEY]
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params={NUMPY_KEY: weights + 1},
                current_round=model.current_round,
                metrics={"loss": 1.0 / (1 + model.current_round)} if metrics else {},
            )
        )


if __name__ == "__main__":
    main()
