"""``NumpyCrossSiteEvalRecipe``: cross-site evaluation of pre-trained numpy models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.client.formats import NUMPY
from ember.job.definition import APP_DIR, ClientApp, JobFile
from ember.recipes.base import Recipe
from ember.recipes.client_apps import client_app
from ember.recipes.helpers import (
    CROSS_SITE_EVAL,
    check_participating_clients,
    check_timeout,
)
from ember.recipes.validation import RecipeArgumentError, check_int, check_job_name, check_str

#: the site script used when no ``eval_script`` is given
BUILTIN_VALIDATOR = Path(__file__).with_name("np_validator.py")
#: where the models given by a relative path are bundled in the job
MODELS_DIR = f"{APP_DIR}/cse_models"
MODEL_SUFFIXES = (".npy", ".npz")
DEFAULT_MODEL_DIR = "models"
DEFAULT_MODEL_NAME = {"server": "server.npy"}


class NumpyCrossSiteEvalRecipe(Recipe):
    """Standalone cross-site evaluation (NVFlare's ``NumpyCrossSiteEvalRecipe``): no
    training; every site validates each pre-trained model the server holds, and the server
    writes the matrix (``server/cross_site_eval/``: ``cross_val_results.json``,
    ``cross_val_matrix.json``, ``cross_val_matrix.png``; see docs/evaluation.md).

    The models: ``model_name`` maps a model id to its .npy/.npz file in ``model_dir``
    (``{"model_1": "model_1.npy"}``); the model is sent, and its column named,
    ``SRV_<id>``. ``initial_ckpt`` is one more model file (id ``server``). With neither,
    NVFlare's default: ``model_dir/server.npy`` (``model_dir`` defaults to ``"models"``).
    A relative path must exist now and is bundled into the job; an absolute one is read on
    the server when the job runs.

    The sites run ``eval_script`` (with ``eval_args``), which answers ``flare.is_evaluate()``
    tasks with ``FLModel(metrics=...)``, or, without one, the built-in validator
    (``ember.recipes.np_validator``: NVFlare's ``NPValidator`` metric without its random
    epsilon, ``accuracy = sum(w / max(w))`` over the model's weights, the same at every
    site). With ``submit_models=True`` each site first submits its own model
    (``flare.is_submit_model()``), validated by all as a column named after the site.

    ``participating_clients`` (None: every alive site) restricts the sites asked;
    ``submit_model_timeout`` and ``validation_timeout`` are the seconds a site may take per
    task (None: the job's ``runtime.task_timeout``); a site that does not answer in time is left
    out while ``min_clients`` still answer.
    """

    framework = NUMPY

    def __init__(
        self,
        *,
        name: str = "numpy_cross_site_eval",
        min_clients: int = 2,
        model_dir: str | None = None,
        model_name: dict[str, str] | None = None,
        initial_ckpt: str | None = None,
        eval_script: str | None = None,
        eval_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
        submit_models: bool = False,
        submit_model_timeout: float | None = None,
        validation_timeout: float | None = None,
        participating_clients: list[str] | None = None,
    ) -> None:
        name = check_job_name(name)
        min_clients = check_int("min_clients", min_clients, 1)
        if not isinstance(submit_models, bool):
            raise RecipeArgumentError("submit_models must be True or False")
        files: dict[str, JobFile] = {}
        models = _models(model_dir, model_name, initial_ckpt, files)
        if eval_script is None:
            if eval_args:
                raise RecipeArgumentError(
                    "eval_args are the arguments of eval_script; give eval_script too"
                )
            if submit_models:
                raise RecipeArgumentError(
                    "submit_models=True needs an eval_script that submits the site's model "
                    "(the built-in validator has none)"
                )
            app = ClientApp(
                script=f"{APP_DIR}/{BUILTIN_VALIDATOR.name}",
                launch_external_process=_flag(launch_external_process),
                command=check_str("command", command, allow_none=True),
            )
            files[app.script] = BUILTIN_VALIDATOR
        else:
            check_str("eval_script", eval_script)
            if not Path(eval_script).expanduser().is_file():
                raise RecipeArgumentError(f"eval_script {eval_script!r} does not exist")
            app, script_files = client_app(eval_script, eval_args, launch_external_process, command)
            files = {**script_files, **files}  # the script's folder first, then the models
        args: dict[str, Any] = {
            "min_clients": min_clients,
            "submit_models": submit_models,
            "include_global": False,
            "models": models,
            "participating_clients": check_participating_clients(participating_clients),
            "submit_model_timeout": check_timeout("submit_model_timeout", submit_model_timeout),
            "validation_timeout": check_timeout("validation_timeout", validation_timeout),
        }
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[{"target": CROSS_SITE_EVAL, "args": args}],
            client=app,
            files=files,
            framework=NUMPY,
        )


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RecipeArgumentError("launch_external_process must be True or False")
    return value


def _models(
    model_dir: Any, model_name: Any, initial_ckpt: Any, files: dict[str, JobFile]
) -> dict[str, str]:
    """``{model id: job-relative or absolute path}``; relative files are added to ``files``."""
    check_str("model_dir", model_dir, allow_none=True)
    check_str("initial_ckpt", initial_ckpt, allow_none=True)
    if model_name is None:
        names: dict[str, str] = {} if initial_ckpt is not None else dict(DEFAULT_MODEL_NAME)
    elif isinstance(model_name, dict) and model_name:
        names = dict(model_name)
    else:
        raise RecipeArgumentError(
            "model_name must be a dict {model id: file name in model_dir}, e.g. "
            f"{{'model_1': 'model_1.npy'}}, got {model_name!r}"
        )
    folder = Path(model_dir if model_dir is not None else DEFAULT_MODEL_DIR).expanduser()
    paths = {}
    for model_id, file in names.items():
        if not isinstance(model_id, str) or not model_id or "/" in model_id:
            raise RecipeArgumentError(
                f"model_name's keys are model ids (non-empty, no '/'), got {model_id!r}"
            )
        if not isinstance(file, str) or not file:
            raise RecipeArgumentError(f"model_name[{model_id!r}] must be a file name, got {file!r}")
        paths[model_id] = folder / file
    if initial_ckpt is not None:
        if "server" in paths:
            raise RecipeArgumentError(
                "initial_ckpt is the model with id 'server', which model_name names too; "
                "drop one of them"
            )
        paths["server"] = Path(initial_ckpt).expanduser()
    models = {}
    for model_id, path in paths.items():
        if path.suffix not in MODEL_SUFFIXES:
            raise RecipeArgumentError(
                f"model {model_id!r} must be a .npy or .npz file, got {str(path)!r}"
            )
        if path.is_absolute():
            models[model_id] = str(path)  # read on the server when the job runs
            continue
        if not path.is_file():
            raise RecipeArgumentError(
                f"model {model_id!r}: {str(path)!r} does not exist (a relative path is "
                "bundled into the job, so it must exist now; an absolute one is read on the "
                "server)"
            )
        dest = f"{MODELS_DIR}/{model_id}{path.suffix}"
        files[dest] = path.resolve()
        models[model_id] = dest
    return models
