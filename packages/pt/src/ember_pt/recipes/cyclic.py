"""``CyclicRecipe`` for PyTorch: cyclic weight transfer of a model from site to site."""

from __future__ import annotations

from ember.recipes import CyclicRecipe as UnifiedCyclicRecipe


class CyclicRecipe(UnifiedCyclicRecipe):
    """Cyclic weight transfer (as NVFlare's ``CyclicRecipe``) of a PyTorch model:
    ``ember.recipes.CyclicRecipe(framework="pytorch")``. For ``num_rounds`` rounds the model
    travels from site to site, each training the model the previous site sent;
    ``order="fixed"`` or ``"random"`` (from ``seed``). ``model`` and ``initial_ckpt`` are
    :class:`ember_pt.recipes.FedAvgRecipe`'s (an ``nn.Module``, ``{"path", "args"}``, a
    .pt/.pth/.safetensors checkpoint); the last model of each round is saved as
    ``server/models/global_model.safetensors``. Train tasks carry ``meta["model_class"]``
    (when known), ``meta["cyclic_position"]`` and ``meta["cyclic_order"]``.
    """

    framework = "pytorch"
