"""What the k-means and SVM recipes share: the client app and the job around a controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.job.definition import APP_DIR, ClientApp, JobDefinition, JobFile
from ember.recipes.validation import (
    RecipeArgumentError,
    check_int,
    check_job_name,
    check_str,
)

FRAMEWORK = "sklearn"


def check_number(name: str, value: Any, positive: bool = True) -> float:
    """A real number (not a bool), > 0 when ``positive``."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or value != value
        or (positive and value <= 0)
    ):
        wanted = "a number > 0" if positive else "a number"
        raise RecipeArgumentError(f"{name} must be {wanted}, got {value!r}")
    return float(value)


def build_job(
    recipe: str,
    *,
    name: Any,
    min_clients: Any,
    train_script: Any,
    train_args: Any,
    launch_external_process: Any,
    command: Any,
    workflow: dict[str, Any],
) -> tuple[JobDefinition, dict[str, JobFile]]:
    """The job running ``workflow`` on the server and ``train_script`` at every site; checks
    the arguments every recipe has."""
    name = check_job_name(name)
    min_clients = check_int("min_clients", min_clients, 1)
    check_str("train_script", train_script)
    script = Path(train_script).expanduser().resolve()
    if not script.is_file():
        raise RecipeArgumentError(
            f"train_script {train_script!r} does not exist (looked for {script})"
        )
    if not isinstance(train_args, str):
        raise RecipeArgumentError(f"train_args must be a string of arguments, got {train_args!r}")
    if not isinstance(launch_external_process, bool):
        raise RecipeArgumentError("launch_external_process must be True or False")
    check_str("command", command, allow_none=True)
    workflow["args"]["min_clients"] = min_clients
    job = JobDefinition(
        name=name,
        min_clients=min_clients,
        workflows=[workflow],
        client=ClientApp(
            script=f"{APP_DIR}/{script.name}",
            args=train_args,
            launch_external_process=launch_external_process,
            command=command,
        ),
        meta={"recipe": recipe, "framework": FRAMEWORK},
    )
    return job, {APP_DIR: script.parent}
