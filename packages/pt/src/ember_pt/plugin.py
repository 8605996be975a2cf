"""ember-pt's hook module: registers its decomposers and recipes lazily, imports no torch."""

from __future__ import annotations

from ember.plugins import DecomposerEntry, RecipeEntry, hookimpl

_DECOMPOSERS = "ember_pt.decomposers"


@hookimpl
def ember_fobs_decomposers() -> list[DecomposerEntry]:
    return [
        DecomposerEntry("torch.Tensor", f"{_DECOMPOSERS}:TensorDecomposer"),
        DecomposerEntry(
            "ember_pt.decomposers.RelayedTensor", f"{_DECOMPOSERS}:RelayedTensorDecomposer"
        ),
    ]


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            name="pytorch-fedavg",
            target="ember_pt.recipes:FedAvgRecipe",
            framework="pytorch",
            algorithm="FedAvg",
            description="Federated averaging of a torch.nn.Module's state_dict",
        )
    ]
