"""ember-pt's hook module: registers its decomposers, framework and recipes lazily, imports
no torch."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

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
    "pytorch-fedavg-he": (
        "FedAvgRecipeWithHE",
        "FedAvg",
        "FedAvg over CKKS ciphertexts (ember-pt[he]): the server never holds the secret key",
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
        # HE FedAvg (ember-pt[he]): sites decrypt what they receive, encrypt what they send
        *(
            entry
            for fmt, prefix in (("pytorch-he", "torch"), ("numpy-he", "numpy"))
            for entry in (
                ParamsConverterEntry(
                    name=f"{fmt}-from-numpy",
                    target=f"ember_pt.he.convert:{prefix}_from_exchange",
                    from_format="numpy",
                    to_format=fmt,
                ),
                ParamsConverterEntry(
                    name=f"{fmt}-to-numpy",
                    target=f"ember_pt.he.convert:{prefix}_to_exchange",
                    from_format=fmt,
                    to_format="numpy",
                    converts_results=True,
                ),
            )
        ),
    ]


@hookimpl
def ember_tensor_adapters() -> list[TensorAdapterEntry]:
    return [TensorAdapterEntry("pytorch", "ember_pt.tensor_downloader:TorchTensorAdapter")]


@hookimpl
def ember_provision_kit_files(project: Any, state: Path, kind: str, name: str) -> dict[str, bytes]:
    """HE FedAvg's keys, for a project with ``homomorphic_encryption: true``: the project's
    CKKS pair, the secret context in clients' kits only, the public one in the server's and
    clients'."""
    if not getattr(project, "homomorphic_encryption", False) or kind not in ("server", "client"):
        return {}
    if importlib.util.find_spec("tenseal") is None:
        from ember.errors import EmberError

        raise EmberError(
            "the project sets homomorphic_encryption: true but tenseal is not installed; "
            "`pip install ember-pt[he]` and provision again"
        )
    from ember_pt.he.keys import kit_files

    return kit_files(state, kind)
