"""What the k-means and SVM recipes share: number checks and the job around a controller."""

from __future__ import annotations

from typing import Any

from ember.recipes import (
    Recipe,
    RecipeArgumentError,
    check_int,
    check_job_name,
    client_app,
)


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


def assemble_job(
    recipe: Recipe,
    *,
    name: Any,
    min_clients: Any,
    train_script: Any,
    train_args: Any,
    launch_external_process: Any,
    command: Any,
    workflow: dict[str, Any],
) -> None:
    """Make ``recipe``'s job: ``workflow`` on the server, ``train_script`` at every site;
    checks the arguments every recipe has."""
    name = check_job_name(name)
    min_clients = check_int("min_clients", min_clients, 1)
    client, files = client_app(train_script, train_args, launch_external_process, command)
    workflow["args"]["min_clients"] = min_clients
    recipe.assemble(
        name=name, min_clients=min_clients, workflows=[workflow], client=client, files=files
    )
