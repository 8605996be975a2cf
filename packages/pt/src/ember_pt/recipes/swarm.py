"""``SwarmLearningRecipe``: client-controlled federated learning of a PyTorch model."""

from __future__ import annotations

from typing import Any

from ember.recipes import (
    Recipe,
    RecipeArgumentError,
    check_choice,
    check_int,
    check_job_name,
    check_regex,
    client_app,
    get_framework,
)

SWARM_CONTROLLER = "ember.controllers:SwarmController"
SWARM_SITE = "ember.site_workflows:SwarmSiteLink"


class SwarmLearningRecipe(Recipe):
    """Swarm learning: the server only orchestrates; the sites aggregate peer to peer.

    Each round the server names an aggregator site (``aggregator_selection``: round robin
    over the alive sites, or random from ``seed``). Every site's runtime gives its script the
    current global model — the initial one, loaded at the site, or the one it pulls from the
    previous round's aggregator — and sends the script's result to this round's aggregator,
    which averages the results (weighted by ``NUM_STEPS_CURRENT_ROUND``) and saves the new
    global model in its own workspace (``<site>/models/global_model.safetensors``). The
    server receives metrics only; ``metrics_summary.json`` names the site holding the final
    model. Scripts use the plain Client API and receive a state_dict of tensors.

    ``model`` / ``initial_ckpt`` are as in :class:`~ember_pt.recipes.FedAvgRecipe`.
    """

    framework = "pytorch"

    def __init__(
        self,
        *,
        name: str = "swarm",
        min_clients: int,
        num_rounds: int = 2,
        model: Any = None,
        initial_ckpt: str | None = None,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        aggregator_selection: str = "round_robin",
        seed: int = 0,
        exclude_vars: str | list[str] | None = None,
    ) -> None:
        name = check_job_name(name)
        min_clients = check_int("min_clients", min_clients, 1)
        num_rounds = check_int("num_rounds", num_rounds, 1)
        app, files = client_app(train_script, train_args, launch_external_process, command)
        selection = check_choice(
            "aggregator_selection", aggregator_selection, ["round_robin", "random"]
        )
        seed = check_int("seed", seed, 0)
        exclude = check_regex("exclude_vars", exclude_vars)
        if model is None and initial_ckpt is None:
            raise RecipeArgumentError("give the initial model: model=... or initial_ckpt=...")
        setup = get_framework(self.framework).setup(model, initial_ckpt, files)
        app.params_format = setup.params_format
        app.site_workflow = {
            "target": SWARM_SITE,
            "args": {"persistor": setup.persistor, "exclude_vars": exclude},
        }
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": SWARM_CONTROLLER,
                    "args": {
                        "num_rounds": num_rounds,
                        "min_clients": min_clients,
                        "aggregator_selection": selection,
                        "seed": seed,
                        "task_meta": setup.task_meta,
                    },
                }
            ],
            client=app,
            files=files,
        )
