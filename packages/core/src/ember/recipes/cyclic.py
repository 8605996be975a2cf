"""``CyclicRecipe``: the unified cyclic weight transfer recipe, for every framework."""

from __future__ import annotations

from typing import Any

from ember.recipes.base import Recipe
from ember.recipes.client_apps import client_app
from ember.recipes.validation import RecipeArgumentError, check_choice, check_int, check_job_name

CYCLIC_CONTROLLER = "ember.controllers:CyclicController"
ORDERS = ("fixed", "random")


class CyclicRecipe(Recipe):
    """Cyclic weight transfer (NVFlare's ``CyclicRecipe``): for ``num_rounds`` rounds the
    model travels from site to site, each training the model the previous site sent.

    ``order="fixed"`` visits the sites in the job's order every round; ``order="random"``
    draws a new permutation each round from ``seed`` (drawn and recorded in
    ``metrics_summary.json`` when None). A site that dies, fails or times out is skipped
    while ``min_clients`` sites (default 2, as NVFlare's) remain alive; then the job fails.
    ``framework``, ``model`` and ``initial_ckpt`` are as in
    :class:`~ember.recipes.FedAvgRecipe`; the last model of each round is saved as
    ``server/models/global_model<ext>``. Train tasks carry ``meta["cyclic_position"]``,
    ``meta["cyclic_order"]`` and the framework's task meta (``meta["model_class"]`` when
    known). Framework packages subclass it with their framework fixed
    (``ember_pt.recipes.CyclicRecipe``, ``ember_tf.recipes.CyclicRecipe``).
    """

    def __init__(
        self,
        *,
        name: str = "cyclic",
        framework: str | None = None,
        min_clients: int = 2,
        num_rounds: int = 2,
        model: Any = None,
        initial_ckpt: str | None = None,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        order: str = "fixed",
        seed: int | None = None,
    ) -> None:
        name = check_job_name(name)
        framework = self.framework_name(framework)
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
        setup = self.model_setup(framework, model, initial_ckpt, files)
        app.params_format = setup.params_format
        args: dict[str, Any] = {
            "num_rounds": num_rounds,
            "min_clients": min_clients,
            "persistor": setup.persistor,
            "order": order,
            "seed": seed,
        }
        if setup.task_meta:
            args["task_meta"] = dict(setup.task_meta)
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": CYCLIC_CONTROLLER, "args": args}],
            client=app,
            files=files,
            framework=framework,
        )
