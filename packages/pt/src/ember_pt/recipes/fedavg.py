"""``FedAvgRecipe`` for PyTorch: federated averaging of an ``nn.Module``'s state_dict."""

from __future__ import annotations

from ember.recipes import FedAvgRecipe as UnifiedFedAvgRecipe


class FedAvgRecipe(UnifiedFedAvgRecipe):
    """FedAvg of a PyTorch model: ``ember.recipes.FedAvgRecipe(framework="pytorch")``.

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
