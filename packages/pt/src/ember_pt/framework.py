"""The ``pytorch`` framework for recipes: ``FedAvgRecipe(framework="pytorch", model=...)``.

Importing this module does not import torch: an ``nn.Module`` can only exist once torch is
imported, so a model is recognised through ``sys.modules``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from ember.recipes import (
    APP_DIR,
    Framework,
    JobFile,
    ModelSetup,
    RecipeArgumentError,
    bundle_checkpoint,
    model_factory,
)

PERSISTOR = "ember_pt.persistor:TorchPersistor"
PARAMS_FORMAT = "pytorch"


class PyTorchFramework(Framework):
    """PyTorch models. ``model`` is an ``nn.Module`` instance (its state_dict is written
    into the job at export) or ``{"path": "pkg.module.Class", "args": {...}}``
    (``class_path`` accepted), built on the server. ``initial_ckpt`` (.pt/.pth state_dict,
    loaded with ``weights_only=True``, or .safetensors) gives the initial weights instead; a
    relative path is bundled into the job. Global models are saved as
    ``server/models/*.safetensors``; scripts receive a state_dict of CPU tensors, and every
    task carries the model's class in ``meta["model_class"]`` (``{"path", "args"}``) when
    it is known, so a site may rebuild it."""

    name = "pytorch"
    checkpoint_suffixes = (".pt", ".pth", ".safetensors")

    def setup(self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]) -> ModelSetup:
        torch = sys.modules.get("torch")  # an nn.Module exists only if torch is imported
        is_module = torch is not None and isinstance(model, torch.nn.Module)
        factory = None if is_module or model is None else model_factory(model)
        if model is not None and not is_module and factory is None:
            raise RecipeArgumentError(
                "model must be a torch.nn.Module instance or {'path': 'package.module.Class', "
                f"'args': {{...}}}}, got {type(model).__name__}"
            )
        args: dict[str, Any] = {}
        model_class: dict[str, Any] | None = None
        if is_module:
            cls = type(model)
            model_class = {"path": f"{cls.__module__}.{cls.__qualname__}", "args": {}}
        elif factory is not None:
            model_class = factory
        if model_class is not None:
            args["model_class"] = model_class["path"]
        if initial_ckpt is not None:
            args["initial_ckpt"] = bundle_checkpoint(initial_ckpt, self.checkpoint_suffixes, files)
        elif factory is not None:
            args["factory"] = factory
        else:
            from ember_pt.persistor import save_module

            # written when the job is exported: the recipe holds the module, not a copy
            files[f"{APP_DIR}/initial_model.safetensors"] = functools.partial(save_module, model)
            args["initial_file"] = f"{APP_DIR}/initial_model.safetensors"
        return ModelSetup(
            {"target": PERSISTOR, "args": args},
            task_meta={"model_class": model_class} if model_class is not None else {},
            params_format=PARAMS_FORMAT,
        )
