"""``CyclicRecipe``: cyclic weight transfer of a Keras model from site to site."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ember.recipes import (
    Recipe,
    RecipeArgumentError,
    check_choice,
    check_int,
    check_job_name,
    client_app,
)
from ember_tf.framework import TensorFlowFramework, check_input_shape

CYCLIC_CONTROLLER = "ember.controllers:CyclicController"
ORDERS = ("fixed", "random")


class CyclicRecipe(Recipe):
    """Cyclic weight transfer (NVFlare's ``CyclicRecipe``) of a Keras model: for
    ``num_rounds`` rounds the model travels from site to site, each training the model the
    previous site sent. ``order="fixed"`` visits the sites in the job's order every round;
    ``order="random"`` draws a new permutation each round from ``seed``. A site that fails or
    times out is skipped while ``min_clients`` sites remain. ``model``, ``initial_ckpt`` and
    ``input_shape`` are :class:`ember_tf.recipes.FedAvgRecipe`'s; the last model of each
    round is saved as ``server/models/global_model.weights.h5``.
    """

    framework = "tensorflow"

    def __init__(
        self,
        *,
        name: str = "cyclic",
        min_clients: int,
        num_rounds: int = 2,
        model: Any = None,
        initial_ckpt: str | None = None,
        input_shape: Sequence[int] | None = None,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        order: str = "fixed",
        seed: int | None = None,
    ) -> None:
        name = check_job_name(name)
        min_clients = check_int("min_clients", min_clients, 1)
        num_rounds = check_int("num_rounds", num_rounds, 1)
        order = check_choice("order", order, ORDERS)
        if seed is not None:
            check_int("seed", seed, 0)
            if order != "random":
                raise RecipeArgumentError(
                    "seed only applies to order='random'; pass order='random' or drop seed"
                )
        app, files = client_app(train_script, train_args, launch_external_process, command)
        if model is None and initial_ckpt is None:
            raise RecipeArgumentError("give the initial model: model=... or initial_ckpt=...")
        setup = TensorFlowFramework().setup_model(
            model, initial_ckpt, files, check_input_shape(input_shape)
        )
        app.params_format = setup.params_format
        args: dict[str, Any] = {
            "num_rounds": num_rounds,
            "min_clients": min_clients,
            "persistor": setup.persistor,
            "order": order,
            "seed": seed,
        }
        if setup.task_meta:
            args["task_meta"] = setup.task_meta
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": CYCLIC_CONTROLLER, "args": args}],
            client=app,
            files=files,
        )
