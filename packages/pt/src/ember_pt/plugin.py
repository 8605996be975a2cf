"""ember-pt's hook module: registers its decomposers, framework and recipes lazily, imports
no torch."""

from __future__ import annotations

from ember.plugins import (
    DecomposerEntry,
    FrameworkEntry,
    ParamsConverterEntry,
    RecipeEntry,
    TensorAdapterEntry,
    hookimpl,
)

_DECOMPOSERS = "ember_pt.decomposers"

# recipe name -> (class in ember_pt.recipes, algorithm, description)
_RECIPES = {
    "pytorch-fedavg": (
        "FedAvgRecipe",
        "FedAvg",
        "Federated averaging of a torch.nn.Module's state_dict",
    ),
    "pytorch-fedprox": (
        "FedProxRecipe",
        "FedProx",
        "FedAvg with a proximal term (fedprox_mu) in every site's loss",
    ),
    "pytorch-fedopt": (
        "FedOptRecipe",
        "FedOpt",
        "FedAvg whose server applies the averaged update with a torch optimizer",
    ),
    "pytorch-scaffold": (
        "ScaffoldRecipe",
        "SCAFFOLD",
        "FedAvg with control variates that correct client drift",
    ),
    "pytorch-cyclic": (
        "CyclicRecipe",
        "Cyclic",
        "The model travels from site to site, each trains it in turn",
    ),
    "pytorch-fedeval": (
        "FedEvalRecipe",
        "FedEval",
        "Evaluate one checkpoint on every site",
    ),
    "pytorch-swarm": (
        "SwarmLearningRecipe",
        "Swarm",
        "Client-controlled learning: sites aggregate peer to peer, the server orchestrates",
    ),
}


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
            name=name,
            target=f"ember_pt.recipes:{cls}",
            framework="pytorch",
            algorithm=algorithm,
            description=description,
        )
        for name, (cls, algorithm, description) in _RECIPES.items()
    ]


@hookimpl
def ember_frameworks() -> list[FrameworkEntry]:
    return [
        FrameworkEntry(
            "pytorch",
            "ember_pt.framework:PyTorchFramework",
            description="torch.nn.Module state_dicts; scripts receive CPU tensors",
        )
    ]


@hookimpl
def ember_params_converters() -> list[ParamsConverterEntry]:
    return [
        ParamsConverterEntry(
            name="pytorch-from-numpy",
            target="ember_pt.convert:to_state_dict",
            from_format="numpy",
            to_format="pytorch",
        ),
        ParamsConverterEntry(
            name="pytorch-to-numpy",
            target="ember_pt.convert:from_state_dict",
            from_format="pytorch",
            to_format="numpy",
        ),
    ]


@hookimpl
def ember_tensor_adapters() -> list[TensorAdapterEntry]:
    return [TensorAdapterEntry("pytorch", "ember_pt.tensor_downloader:TorchTensorAdapter")]
