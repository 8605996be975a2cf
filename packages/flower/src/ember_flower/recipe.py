"""``FlowerRecipe``: a Flower app run unmodified inside an Ember job."""

from __future__ import annotations

import json
import math
import numbers
import shutil
import tomllib
from pathlib import Path
from typing import Any

from ember.recipes import (
    APP_DIR,
    ClientApp,
    JobFile,
    Recipe,
    RecipeArgumentError,
    check_int,
    check_job_name,
)
from ember_flower.site import SITE_SCRIPT, SITE_SCRIPT_SOURCE

CONTROLLER = "ember_flower.controller:FlowerController"
APP_FOLDER = "flower_app"
TUNNEL_SITE_WORKFLOW = {"target": "ember.site_workflows:TunnelSiteLink"}
#: what a Flower app bundle (FAB) takes; Flower drops the rest (and test_*.py) itself
BUNDLED = (".py", ".toml", ".md", ".yaml", ".yml", ".json")
_SKIPPED_DIRS = {"__pycache__", ".venv", ".git", "build", "dist", ".pytest_cache"}


def check_app(flower_content: Any) -> Path:
    """The app folder: it must hold a pyproject.toml with ``[tool.flwr.app]`` components."""
    if not isinstance(flower_content, str | Path) or not str(flower_content):
        raise RecipeArgumentError(
            f"flower_content must be the path of a Flower app folder, got {flower_content!r}"
        )
    folder = Path(flower_content).expanduser().resolve()
    project = folder / "pyproject.toml"
    if not project.is_file():
        raise RecipeArgumentError(
            f"flower_content {str(flower_content)!r} has no pyproject.toml: give the folder of "
            "a Flower app (the one `flwr run` takes)"
        )
    try:
        data = tomllib.loads(project.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeArgumentError(f"{project} is not valid TOML: {exc}") from None
    components = data.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    missing = [k for k in ("serverapp", "clientapp") if not components.get(k)]
    if missing:
        raise RecipeArgumentError(
            f"{project} names no {' or '.join(missing)} under [tool.flwr.app.components]; "
            "a Flower app needs both"
        )
    return folder


def _copier(source: Path) -> JobFile:
    def write(dest: Path) -> None:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if any(part in _SKIPPED_DIRS or part.startswith(".") for part in rel.parts):
                continue
            if path.is_file() and path.suffix in BUNDLED:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest / rel)
        dest.mkdir(parents=True, exist_ok=True)

    return write


def check_run_config(run_config: Any) -> dict[str, Any]:
    if run_config is None:
        return {}
    if not isinstance(run_config, dict) or not all(isinstance(k, str) for k in run_config):
        raise RecipeArgumentError(
            f"run_config must be a dict of the app's [tool.flwr.app.config] keys, got "
            f"{run_config!r}"
        )
    for key, value in run_config.items():
        if not isinstance(value, bool | int | float | str) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise RecipeArgumentError(
                f"run_config[{key!r}] must be a bool, int, finite float or str (Flower's "
                f"config values), got {value!r}"
            )
    json.dumps(run_config)
    return dict(run_config)


class FlowerRecipe(Recipe):
    """A Flower app run unmodified (NVFlare's ``FlowerRecipe``).

    ``flower_content``: the app folder (a ``pyproject.toml`` with ``[tool.flwr.app]``, its
    ServerApp and ClientApp), bundled into the job (its .py/.toml/.md/.yaml/.json files).
    The server job runs Flower's SuperLink on loopback and submits the app with
    ``flwr run`` once ``min_clients`` sites run a SuperNode; ``run_config`` overrides the
    app's ``[tool.flwr.app.config]``. Each site's node config holds ``partition-id`` (its
    place in the job's site order) and ``num-partitions``. The run may take ``timeout``
    seconds (0: ``flower.run_timeout``). Flower's ServerApp log lands in
    ``server/flower_run.log``, its aggregated metrics per round in ``round_metrics.jsonl``
    and the job's tracking. See docs/flower.md.
    """

    framework = "flower"

    def __init__(
        self,
        flower_content: str | Path,
        *,
        name: str = "flower",
        min_clients: int = 2,
        run_config: dict[str, Any] | None = None,
        timeout: float = 0,
    ) -> None:
        name = check_job_name(name)
        min_clients = check_int("min_clients", min_clients, 1)
        folder = check_app(flower_content)
        run_config = check_run_config(run_config)
        if (
            not isinstance(timeout, numbers.Real)
            or isinstance(timeout, bool)
            or not math.isfinite(float(timeout))
            or timeout < 0
        ):
            raise RecipeArgumentError(
                f"timeout must be a number of seconds >= 0 (0: flower.run_timeout), got {timeout!r}"
            )
        self.flower_content = folder
        files: dict[str, JobFile] = {
            APP_FOLDER: _copier(folder),
            f"{APP_DIR}/{SITE_SCRIPT}": SITE_SCRIPT_SOURCE,
        }
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": CONTROLLER,
                    "args": {
                        "app_folder": APP_FOLDER,
                        "min_clients": min_clients,
                        "run_config": run_config,
                        "timeout": float(timeout),
                    },
                }
            ],
            client=ClientApp(
                script=f"{APP_DIR}/{SITE_SCRIPT}",
                site_workflow=dict(TUNNEL_SITE_WORKFLOW),
            ),
            files=files,
        )
        # every SuperNode must be up for the run: the sites run at once, whatever cap the
        # env puts on concurrent training
        self.job.all_sites_at_once = True
