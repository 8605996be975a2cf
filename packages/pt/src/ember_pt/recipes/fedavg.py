"""``FedAvgRecipe`` for PyTorch: federated averaging of an ``nn.Module``'s state_dict."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from ember.job.definition import APP_DIR, JobFile
from ember.recipes.fedavg import FedAvgRecipe as CoreFedAvgRecipe
from ember.recipes.fedavg import bundle_checkpoint, model_factory
from ember.recipes.validation import RecipeArgumentError

_PERSISTOR = "ember_pt.persistor:TorchPersistor"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


class FedAvgRecipe(CoreFedAvgRecipe):
    """FedAvg of a PyTorch model.

    ``model`` is an ``nn.Module`` instance (its state_dict is written into the job at
    export) or ``{"path": "pkg.module.Class", "args": {...}}`` (``class_path`` accepted),
    built on the server. ``initial_ckpt`` (.pt/.pth state_dict, loaded with
    ``weights_only=True``, or .safetensors) gives the initial weights instead; a relative
    path is bundled into the job. Global models are saved as ``server/models/*.safetensors``.

    Every task carries the model's class in ``meta["model_class"]`` (``{"path", "args"}``,
    when known) so a site may rebuild it. The server holds and averages numpy arrays: sites
    receive a state_dict of CPU tensors (sharing memory with what arrived) and may send
    tensors or numpy arrays back. ``server_expected_format="pytorch"`` makes the server hold,
    save and send the global model as tensors (zero-copy views of the averaged arrays), for
    server-side code written for torch.
    """

    framework = "pytorch"
    params_format = "pytorch"

    def model_persistor(
        self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> dict[str, Any]:
        spec, self.model_class = torch_model(model, initial_ckpt, files)
        return spec

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """FedAvg's arguments; tasks carry the model class when it is known."""
        if self.model_class is None:
            return args
        return {**args, "task_meta": {"model_class": self.model_class}}


def torch_model(
    model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The persistor spec and the model class (``{"path", "args"}``, or None when unknown)
    for a PyTorch ``model`` (an ``nn.Module`` or ``{"path", "args"}``) and/or
    ``initial_ckpt``; adds the files to bundle into the job. Every pytorch recipe uses it."""
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
        args["initial_ckpt"] = bundle_checkpoint(initial_ckpt, CHECKPOINT_SUFFIXES, files)
    elif factory is not None:
        args["factory"] = factory
    else:
        from ember_pt.persistor import save_module

        # written when the job is exported: the recipe holds the module, not a copy
        files[f"{APP_DIR}/initial_model.safetensors"] = functools.partial(save_module, model)
        args["initial_file"] = f"{APP_DIR}/initial_model.safetensors"
    return {"target": _PERSISTOR, "args": args}, model_class


def fedavg_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """For recipes built on FedAvg: ``init(self, *, name=..., <its own>, **kwargs)`` passes
    ``kwargs`` on to :class:`FedAvgRecipe`; its signature (what ``ember recipe show`` and
    ``help()`` list) becomes FedAvg's parameters, with ``init``'s default name, then its own."""
    own = inspect.signature(init).parameters
    base = inspect.signature(CoreFedAvgRecipe.__init__).parameters.values()
    params = [p.replace(default=own["name"].default) if p.name == "name" else p for p in base]
    params += [p for n, p in own.items() if n not in ("self", "name", "kwargs")]
    init.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    return init
