"""sim_overhead client: each round, receive the global model, add 1, send it back."""

import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType


def main() -> None:
    """Answer every task with the received model plus one."""
    flare.init()
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
            )
        )


if __name__ == "__main__":
    main()
