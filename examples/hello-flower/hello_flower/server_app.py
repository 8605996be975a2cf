"""The ServerApp: FedAvg over every connected node; optionally saves the final model."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from hello_flower.task import initial_weights

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rounds = int(context.run_config["num-server-rounds"])
    fraction_evaluate = float(context.run_config["fraction-evaluate"])
    nodes = int(context.run_config["min-nodes"])
    strategy = FedAvg(
        fraction_evaluate=fraction_evaluate,
        min_train_nodes=nodes,
        min_evaluate_nodes=nodes,
        min_available_nodes=nodes,
    )
    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(initial_weights()), num_rounds=rounds
    )
    path = str(context.run_config.get("model-path", ""))
    if path:
        arrays = result.arrays.to_numpy_ndarrays()
        np.savez(path, weights=arrays[0], bias=arrays[1])
