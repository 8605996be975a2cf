"""What the k-means and SVM recipes share: the client app and the job around a controller."""

from __future__ import annotations

from typing import Any

from ember.job.definition import JobDefinition, JobFile
from ember.recipes.client_app import client_app
from ember.recipes.validation import RecipeArgumentError, check_int, check_job_name

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
    client, files = client_app(train_script, train_args, launch_external_process, command)
    workflow["args"]["min_clients"] = min_clients
    job = JobDefinition(
        name=name,
        min_clients=min_clients,
        workflows=[workflow],
        client=client,
        meta={"recipe": recipe, "framework": FRAMEWORK},
    )
    return job, files
