"""ember-tf's hook module: registers its decomposers, params converters, framework, tensor
adapter and recipes by name; imports no tensorflow."""

from __future__ import annotations

from ember.plugins import (
    DecomposerEntry,
    FrameworkEntry,
    ParamsConverterEntry,
    RecipeEntry,
    TensorAdapterEntry,
    hookimpl,
)

_DECOMPOSERS = "ember_tf.decomposers"

# recipe name -> (class in ember_tf.recipes, algorithm, description)
_RECIPES = {
    "tensorflow-fedavg": ("FedAvgRecipe", "FedAvg", "Federated averaging of a Keras model"),
    "tensorflow-fedopt": (
        "FedOptRecipe",
        "FedOpt",
        "FedAvg whose server applies the averaged update with a Keras optimizer",
    ),
    "tensorflow-scaffold": (
        "ScaffoldRecipe",
        "SCAFFOLD",
        "FedAvg with control variates that correct client drift",
    ),
    "tensorflow-fedprox": (
        "FedProxRecipe",
        "FedProx",
        "FedAvg with a proximal term (fedprox_mu) in every site's loss",
    ),
    "tensorflow-cyclic": (
        "CyclicRecipe",
        "Cyclic",
        "The Keras model travels from site to site, each trains it in turn",
    ),
}


@hookimpl
def ember_fobs_decomposers() -> list[DecomposerEntry]:
    # wire names: type_name() of the real classes (tf.Tensor, tf.Variable, keras.Variable)
    return [
        DecomposerEntry(
            "tensorflow.python.framework.tensor.Tensor", f"{_DECOMPOSERS}:TensorDecomposer"
        ),
        DecomposerEntry(
            "tensorflow.python.ops.variables.Variable", f"{_DECOMPOSERS}:VariableDecomposer"
        ),
        DecomposerEntry("keras.src.backend.Variable", f"{_DECOMPOSERS}:KerasVariableDecomposer"),
        DecomposerEntry(
            "ember_tf.decomposers.RelayedTFTensor", f"{_DECOMPOSERS}:RelayedTFTensorDecomposer"
        ),
    ]


@hookimpl
def ember_params_converters() -> list[ParamsConverterEntry]:
    return [
        ParamsConverterEntry(
            name="tensorflow-from-numpy",
            target="ember_tf.convert:to_keras_weights",
            from_format="numpy",
            to_format="tensorflow",
        ),
        ParamsConverterEntry(
            name="tensorflow-to-numpy",
            target="ember_tf.convert:from_keras_weights",
            from_format="tensorflow",
            to_format="numpy",
            converts_results=True,  # {layer: [arrays]} becomes {"layer/i": array} at the site
        ),
    ]


@hookimpl
def ember_frameworks() -> list[FrameworkEntry]:
    return [
        FrameworkEntry(
            "tensorflow",
            "ember_tf.framework:TensorFlowFramework",
            description="Keras models; scripts receive {layer name: [weight arrays]}",
        )
    ]


@hookimpl
def ember_tensor_adapters() -> list[TensorAdapterEntry]:
    return [TensorAdapterEntry("tensorflow", "ember_tf.tensor_downloader:TFTensorAdapter")]


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            name=name,
            target=f"ember_tf.recipes:{cls}",
            framework="tensorflow",
            algorithm=algorithm,
            description=description,
        )
        for name, (cls, algorithm, description) in _RECIPES.items()
    ]
