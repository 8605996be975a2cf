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


#: what a site's entry of ``per_site_config`` may set, and the check of each value
PER_SITE_KEYS = ("train_args", "command", "client_memory_gc_rounds")


def check_per_site_config(per_site_config: Any) -> dict[str, dict[str, Any]]:
    """``per_site_config`` (site name -> ``{"train_args": str, "command": str,
    "client_memory_gc_rounds": int}``, each key optional) checked; ``{}`` for None."""
    if per_site_config is None:
        return {}
    if not isinstance(per_site_config, dict):
        raise RecipeArgumentError(
            "per_site_config must be a dict of site name -> dict of settings, e.g. "
            f"{{'site-1': {{'train_args': '--lr 0.1'}}}}; got {per_site_config!r}"
        )
    checked: dict[str, dict[str, Any]] = {}
    for site, entry in per_site_config.items():
        if not isinstance(site, str) or not site:
            raise RecipeArgumentError(f"per_site_config keys are site names, got {site!r}")
        if not isinstance(entry, dict):
            raise RecipeArgumentError(
                f"per_site_config[{site!r}] must be a dict of settings, got {entry!r}"
            )
        unknown = sorted(str(k) for k in entry if k not in PER_SITE_KEYS)
        if unknown:
            raise RecipeArgumentError(
                f"per_site_config[{site!r}] has unknown keys {', '.join(unknown)}; a site "
                f"may set {', '.join(PER_SITE_KEYS)}"
            )
        own: dict[str, Any] = {}
        if "train_args" in entry:
            if not isinstance(entry["train_args"], str):
                raise RecipeArgumentError(
                    f"per_site_config[{site!r}]['train_args'] must be a string of "
                    f"arguments, got {entry['train_args']!r}"
                )
            own["train_args"] = entry["train_args"]
        if "command" in entry:
            own["command"] = check_str(f"per_site_config[{site!r}]['command']", entry["command"])
        if "client_memory_gc_rounds" in entry:
            own["client_memory_gc_rounds"] = check_int(
                f"per_site_config[{site!r}]['client_memory_gc_rounds']",
                entry["client_memory_gc_rounds"],
                0,
            )
        checked[site] = own
    return checked
