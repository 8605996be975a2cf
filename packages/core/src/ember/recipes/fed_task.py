"""``FedTaskRecipe``: a model-free task (preprocessing, embedding extraction, local
evaluation) run once by all or a sample of the sites, their results collected as JSON."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path, PurePosixPath
from typing import Any

from ember.recipes.base import Recipe
from ember.recipes.client_apps import client_app
from ember.recipes.validation import (
    RecipeArgumentError,
    check_int,
    check_job_name,
    check_optional_int,
    check_str,
)

FED_TASK_CONTROLLER = "ember.controllers:FedTaskController"


class FedTaskRecipe(Recipe):
    """One task for the sites, no global model (NVFlare's ``FedTaskRecipe``).

    The server sends the task ``task_name`` once to the sites alive when the job starts
    (at least ``min_clients``): to all of them, or to ``num_clients`` of them, or to
    ``ceil(fraction * alive)``, drawn without replacement from ``seed`` (None: drawn and
    recorded in the results). Each chosen site's ``task_script`` (run with ``task_args``)
    receives an ``FLModel`` with params ``task_data`` and meta ``task_meta`` plus
    ``"task_name"``, and sends back an ``FLModel``; its params (arrays become nested lists),
    params type, metrics and meta are collected into ``server/<output_path>``
    (:meth:`results` reads it back). The job waits for ``min_responses`` results (None:
    every chosen site) for up to ``timeout`` seconds (0: ``runtime.task_timeout``).
    ``task_data`` and ``task_meta`` must be JSON values (they travel in ``job.json``).
    """

    framework = "numpy"

    def __init__(
        self,
        *,
        name: str = "fed_task",
        task_name: str = "task",
        min_clients: int,
        num_clients: int | None = None,
        fraction: float | None = None,
        seed: int | None = None,
        min_responses: int | None = None,
        timeout: float = 0,
        task_data: dict[str, Any] | None = None,
        task_meta: dict[str, Any] | None = None,
        task_script: str,
        task_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        output_path: str = "fed_task/results.json",
    ) -> None:
        name = check_job_name(name)
        check_str("task_name", task_name)
        min_clients = check_int("min_clients", min_clients, 1)
        num_clients = check_optional_int("num_clients", num_clients, 1)
        if fraction is not None:
            if (
                not isinstance(fraction, numbers.Real)
                or isinstance(fraction, bool)
                or not 0.0 < float(fraction) <= 1.0
            ):
                raise RecipeArgumentError(
                    f"fraction must be a number in (0, 1] (the share of sites that get the "
                    f"task), got {fraction!r}"
                )
            if num_clients is not None:
                raise RecipeArgumentError(
                    "give num_clients (how many sites) or fraction (what share), not both"
                )
            fraction = float(fraction)
        seed = check_optional_int("seed", seed, 0)
        min_responses = check_optional_int("min_responses", min_responses, 1)
        if num_clients is not None and min_responses is not None and min_responses > num_clients:
            raise RecipeArgumentError(
                f"min_responses={min_responses} exceeds num_clients={num_clients}: no more "
                "sites than are sampled can answer; lower min_responses or raise num_clients"
            )
        if (
            not isinstance(timeout, numbers.Real)
            or isinstance(timeout, bool)
            or not math.isfinite(float(timeout))
            or timeout < 0
        ):
            raise RecipeArgumentError(
                f"timeout must be a number of seconds >= 0 (0: runtime.task_timeout), got "
                f"{timeout!r}"
            )
        task_data = _json_dict("task_data", task_data)
        task_meta = _json_dict("task_meta", task_meta)
        self.output_path: str = _check_output_path(output_path)
        try:
            app, files = client_app(task_script, task_args, launch_external_process, command)
        except RecipeArgumentError as exc:  # client_app names the arguments train_*
            message = str(exc).replace("train_script", "task_script")
            raise RecipeArgumentError(message.replace("train_args", "task_args")) from None
        self.task_name = task_name
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": FED_TASK_CONTROLLER,
                    "args": {
                        "task_name": task_name,
                        "task_data": task_data,
                        "task_meta": task_meta,
                        "num_clients": num_clients,
                        "fraction": fraction,
                        "min_responses": min_responses,
                        "timeout": float(timeout),
                        "seed": seed,
                        "output_path": self.output_path,
                    },
                }
            ],
            client=app,
            files=files,
        )

    def results_path(self, result: Any) -> Path:
        """The results JSON of a run: ``result`` is the run (``recipe.execute(env)``) or its
        result folder (``run.get_result()``)."""
        if hasattr(result, "get_result"):
            result = result.get_result()
        path = Path(self.output_path)
        return path if path.is_absolute() else Path(result) / "server" / path

    def results(self, result: Any) -> dict[str, Any]:
        """The collected results (see the class) of a run or result folder."""
        loaded: dict[str, Any] = json.loads(self.results_path(result).read_text("utf-8"))
        return loaded


def _json_dict(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecipeArgumentError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecipeArgumentError(
            f"{name} must hold only JSON values (it travels in job.json): {exc}"
        ) from None
    return dict(value)


def _check_output_path(value: Any) -> str:
    if not isinstance(value, str) or not value.endswith(".json") or not value.strip():
        raise RecipeArgumentError(
            f"output_path must be a path ending in .json, e.g. 'fed_task/results.json', got "
            f"{value!r}"
        )
    if not Path(value).is_absolute() and ".." in PurePosixPath(value).parts:
        raise RecipeArgumentError(
            f"output_path {value!r} must stay inside the server's result folder (no '..')"
        )
    return value
