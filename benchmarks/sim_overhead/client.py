"""sim_overhead client, an ordinary script: each round it receives the global model, makes
new arrays (every weight plus 1) and sends them back, keeping the received model until its
next ``receive()`` (with ``--metrics``, also a loss, as an ordinary script would: the job
then has a round-metrics PNG)."""

import sys

import ember.client as flare
from ember.client import FLModel, ParamsType


def main() -> None:
    """Answer every task with the received model plus one."""
    flare.init()
    metrics = "--metrics" in sys.argv[1:]
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        flare.send(
            FLModel(
                params_type=ParamsType.FULL,
                params={k: v + 1.0 for k, v in model.params.items()},
                current_round=model.current_round,
                metrics={"loss": 1.0 / (1 + model.current_round)} if metrics else {},
            )
        )


if __name__ == "__main__":
    main()
