"""``FedEvalRecipe``: every site evaluates one PyTorch model; the server gathers metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ember.recipes import (
    Recipe,
    RecipeArgumentError,
    check_int,
    check_job_name,
    check_str,
    client_app,
    get_framework,
)

FED_EVAL_CONTROLLER = "ember.controllers:FedEvalController"


class FedEvalRecipe(Recipe):
    """Federated evaluation of a PyTorch model: each site receives the model in a
    ``validate`` task (``flare.is_evaluate()``), evaluates it on its data and sends
    ``FLModel(metrics=...)``; ``meta[NUM_STEPS_CURRENT_ROUND]`` (the number of examples)
    weights the mean.

    The weights evaluated are ``initial_ckpt`` (``eval_ckpt``, NVFlare's name for it, is
    accepted too; .pt/.pth state_dict or .safetensors; a relative path is bundled into the
    job) or, without it, those of ``model`` given as an
    ``nn.Module`` instance. ``model`` as ``{"path": "pkg.Class", "args": {...}}`` only names
    the class (sent to sites as ``meta["model_class"]``): it needs ``initial_ckpt``, since a
    freshly built model has no trained weights to evaluate. Results go to
    ``server/fed_eval/results.json``, ``round_metrics.jsonl`` (round 0) and
    ``metrics_summary.json``.
    """

    framework = "pytorch"

    def __init__(
        self,
        *,
        name: str = "fedeval",
        min_clients: int,
        model: Any = None,
        initial_ckpt: str | None = None,
        eval_script: str,
        eval_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        eval_ckpt: str | None = None,
    ) -> None:
        if eval_ckpt is not None:  # NVFlare's name for the checkpoint to evaluate
            if initial_ckpt is not None and initial_ckpt != eval_ckpt:
                raise RecipeArgumentError(
                    "eval_ckpt is NVFlare's name for initial_ckpt; give one of them, got "
                    f"eval_ckpt={eval_ckpt!r} and initial_ckpt={initial_ckpt!r}"
                )
            initial_ckpt = eval_ckpt
        name = check_job_name(name)
        min_clients = check_int("min_clients", min_clients, 1)
        check_str("eval_script", eval_script)
        if not Path(eval_script).expanduser().is_file():
            raise RecipeArgumentError(
                f"eval_script {eval_script!r} does not exist "
                f"(looked for {Path(eval_script).expanduser().resolve()})"
            )
        if not isinstance(eval_args, str):
            raise RecipeArgumentError(f"eval_args must be a string of arguments, got {eval_args!r}")
        app, files = client_app(eval_script, eval_args, launch_external_process, command)
        setup = get_framework(self.framework).setup(model, initial_ckpt, files)  # checks model
        app.params_format = setup.params_format
        torch = sys.modules.get("torch")  # an nn.Module exists only if torch is imported
        if initial_ckpt is None and not (torch is not None and isinstance(model, torch.nn.Module)):
            raise RecipeArgumentError(
                "FedEvalRecipe evaluates trained weights: give initial_ckpt='model.pt' (.pt, "
                ".pth or .safetensors) or model=<an nn.Module instance holding the weights>"
                + ("" if model is None else "; a model given by path has no weights to evaluate")
            )
        # the checkpoint's file name, or the module's class name
        model_name = Path(initial_ckpt).name if initial_ckpt else type(model).__name__
        args: dict[str, Any] = {
            "min_clients": min_clients,
            "persistor": setup.persistor,
            "model_name": model_name,
        }
        if setup.task_meta:
            args["task_meta"] = setup.task_meta
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": FED_EVAL_CONTROLLER, "args": args}],
            client=app,
            files=files,
        )
