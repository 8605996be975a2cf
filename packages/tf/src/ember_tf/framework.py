"""The ``tensorflow`` framework for recipes: ``FedAvgRecipe(framework="tensorflow", model=...)``.

Importing this module does not import tensorflow: a Keras model can only exist once keras is
imported, so a model instance is recognised through ``sys.modules``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
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

PERSISTOR = "ember_tf.persistor:KerasPersistor"
PARAMS_FORMAT = "tensorflow"
#: a full Keras model (architecture and weights) and Keras's weights-only file
CHECKPOINT_SUFFIXES = (".keras", ".h5")


class TensorFlowFramework(Framework):
    """Keras models. ``model`` is a ``keras.Model`` instance or ``{"path": "module.Class",
    "args": {...}}`` (NVFlare's ``class_path`` accepted), built on the server.
    ``initial_ckpt`` is a ``.keras`` file (architecture and weights) or a ``.weights.h5``
    file (weights only: needs ``model`` for the architecture); a relative path is bundled.

    An instance of a Sequential or functional model travels as a ``.keras`` file; an
    instance of your own subclass travels as its class (``{"path": "module.Class"}``, built
    on the server with no arguments; the class must live in a module the server can import,
    for example beside the training script) plus its weights. A model that is not built yet
    is built from ``input_shape`` (one example's shape) or, as in NVFlare's hello-tf, its
    ``_input_shape`` attribute (with the batch axis as a leading None, ``(None, 28, 28)``, as
    NVFlare passes it to ``model.build``; or one example's shape, ``(64,)``). Scripts receive
    ``{layer name: [arrays]}``; global models are saved as
    ``server/models/global_model.weights.h5``.
    """

    name = "tensorflow"
    checkpoint_suffixes = CHECKPOINT_SUFFIXES

    def setup(self, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]) -> ModelSetup:
        return self.setup_model(model, initial_ckpt, files)

    def setup_model(
        self,
        model: Any,
        initial_ckpt: str | None,
        files: dict[str, JobFile],
        input_shape: Sequence[int | None] | None = None,
    ) -> ModelSetup:
        """:meth:`setup` with the ``input_shape`` an unbuilt model is built with."""
        shape = check_input_shape(input_shape)
        keras = sys.modules.get("keras")  # a Keras model exists only if keras is imported
        is_model = keras is not None and isinstance(model, keras.Model)
        factory = None if is_model or model is None else model_factory(model)
        if model is not None and not is_model and factory is None:
            raise RecipeArgumentError(
                "model must be a keras.Model instance or {'path': 'package.module.Class', "
                f"'args': {{...}}}} ('class_path' is accepted too), got {type(model).__name__}"
            )
        args: dict[str, Any] = {}
        if shape is not None:
            args["input_shape"] = shape
        model_class: dict[str, Any] | None = factory
        if initial_ckpt is not None:
            ckpt = _check_ckpt(initial_ckpt)
            if ckpt.endswith(".weights.h5") and model is None:
                raise RecipeArgumentError(
                    f"initial_ckpt {initial_ckpt!r} holds weights only: give model= too (the "
                    "architecture), or a .keras file"
                )
            args["initial_ckpt"] = bundle_checkpoint(ckpt, CHECKPOINT_SUFFIXES, files)
        if is_model:
            built = ensure_built(model, shape)
            cls = type(built)
            if _is_keras_class(cls):
                if initial_ckpt is None:
                    # written when the job is exported: the recipe holds the model, not a copy
                    files[f"{APP_DIR}/initial_model.keras"] = functools.partial(_save, built)
                    args["initial_file"] = f"{APP_DIR}/initial_model.keras"
            else:
                if cls.__module__ == "__main__":
                    raise RecipeArgumentError(
                        f"model is an instance of {cls.__qualname__}, defined in the job script "
                        "itself: the server must import the class, so define it in a module "
                        "beside the training script (e.g. model.py) and import it from there"
                    )
                model_class = {"path": f"{cls.__module__}.{cls.__qualname__}", "args": {}}
                if initial_ckpt is None:
                    files[f"{APP_DIR}/initial_model.weights.h5"] = functools.partial(
                        _save_weights, built
                    )
                    args["initial_weights"] = f"{APP_DIR}/initial_model.weights.h5"
        if model_class is not None:
            args["factory"] = model_class
        return ModelSetup(
            {"target": PERSISTOR, "args": args},
            task_meta={"model_class": model_class} if model_class is not None else {},
            params_format=PARAMS_FORMAT,
        )


def check_input_shape(value: Any) -> list[int | None] | None:
    """``input_shape`` (one example's shape, without the batch axis) as a list, or None."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in value
    ):
        raise RecipeArgumentError(
            f"input_shape must be one example's shape without the batch axis, a list of "
            f"positive integers (None for a free axis), e.g. [64]; got {value!r}"
        )
    return list(value)


def ensure_built(model: Any, input_shape: Sequence[int | None] | None) -> Any:
    """``model``, built from ``input_shape`` or its ``_input_shape`` attribute if it is not
    built yet; a clear error when it has neither."""
    if model.built and model.weights:
        return model
    if input_shape is not None:
        model.build((None, *input_shape))
        return model
    attribute = getattr(model, "_input_shape", None)
    if attribute is None:
        raise RecipeArgumentError(
            f"the Keras model {type(model).__name__} is not built (it has no weights yet): "
            "pass input_shape=[...] (one example's shape) to the recipe, set the model's "
            "_input_shape attribute, or build it (model.build / call it once) first"
        )
    # NVFlare's form, model.build(model._input_shape), includes the batch axis as a leading
    # None: (None, 28, 28); without it, it is one example's shape, (64,)
    batch_first = (
        isinstance(attribute, list | tuple) and len(attribute) > 1 and attribute[0] is None
    )
    shape = check_input_shape(list(attribute[1:]) if batch_first else attribute)
    assert shape is not None
    model.build((None, *shape))
    return model


def _is_keras_class(cls: type) -> bool:
    """A Sequential or functional model (Keras's own classes), saved whole as .keras."""
    return cls.__module__.startswith("keras.") or cls.__module__ == "keras"


def _check_ckpt(initial_ckpt: Any) -> str:
    if not isinstance(initial_ckpt, str) or not (
        initial_ckpt.endswith(".keras") or initial_ckpt.endswith(".weights.h5")
    ):
        raise RecipeArgumentError(
            f"initial_ckpt must be a .keras or .weights.h5 file, got {initial_ckpt!r}"
        )
    return initial_ckpt


def _save(model: Any, path: Path) -> None:
    model.save(str(path))


def _save_weights(model: Any, path: Path) -> None:
    model.save_weights(str(path))
