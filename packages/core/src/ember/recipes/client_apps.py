"""The client app every recipe has: the arguments that say how sites run the training script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.common.model import TransferType
from ember.job.definition import APP_DIR, ClientApp, JobFile
from ember.recipes.validation import RecipeArgumentError, check_choice, check_int, check_str


def client_app(
    train_script: Any,
    train_args: Any,
    launch_external_process: Any,
    command: Any,
    params_transfer_type: Any = "FULL",
    client_memory_gc_rounds: Any = 0,
) -> tuple[ClientApp, dict[str, JobFile]]:
    """Check the client-app arguments; the ``ClientApp`` and the files to bundle (the
    script's folder, as ``app/``)."""
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
    transfer = check_choice(
        "params_transfer_type", params_transfer_type, [t.value for t in TransferType]
    )
    check_int("client_memory_gc_rounds", client_memory_gc_rounds, 0)
    app = ClientApp(
        script=f"{APP_DIR}/{script.name}",
        args=train_args,
        launch_external_process=launch_external_process,
        command=command,
        params_transfer_type=transfer,
        client_memory_gc_rounds=client_memory_gc_rounds,
    )
    return app, {APP_DIR: script.parent}
