"""``KerasPersistor``: the server's Keras model, its initial weights and the saved global models.

The server averages numpy arrays in the exchange format (``{"<layer>/<i>": array}``,
:mod:`ember_tf.convert`); the persistor keeps one Keras model to load weights into and save
them from, as ``.weights.h5`` files (``model.load_weights`` reads them back).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ember.controllers import JobError, build_factory
from ember_tf.convert import load_model_params, model_params


class KerasPersistor:
    """The initial model from a bundled ``.keras`` file (a Sequential or functional model
    given to the recipe), a ``{"path", "args"}`` factory (plus the bundled weights of an
    instance given to the recipe), or an ``initial_ckpt`` (``.keras``, or ``.weights.h5``
    with the factory)."""

    extension = ".weights.h5"

    def __init__(
        self,
        initial_file: str | None = None,
        factory: dict[str, Any] | None = None,
        initial_ckpt: str | None = None,
        initial_weights: str | None = None,
        input_shape: list[int | None] | None = None,
    ) -> None:
        self.initial_file = initial_file
        self.factory = factory
        self.initial_ckpt = initial_ckpt
        self.initial_weights = initial_weights
        self.input_shape = input_shape
        self.model: Any = None

    def initial_params(self, job_dir: Path) -> dict[str, Any]:
        ckpt = _resolve(job_dir, self.initial_ckpt)
        if ckpt is not None and ckpt.name.endswith(".keras"):
            self.model = _load_keras(ckpt)
        elif self.initial_file is not None:
            self.model = _load_keras(job_dir / self.initial_file)
        elif self.factory is not None:
            self.model = self._build(job_dir)
            weights = ckpt or _resolve(job_dir, self.initial_weights)
            if weights is not None:
                self._load_weights(weights)
        else:
            raise JobError("the job has no initial model: give the recipe a model or initial_ckpt")
        return model_params(self.model)

    def save(self, params: dict[str, Any], path: Path) -> None:
        model = self._model()
        try:
            load_model_params(model, params)
        except ValueError as exc:
            raise JobError(f"cannot save the global model: {exc}") from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name.removesuffix(self.extension) + ".tmp" + self.extension)
        model.save_weights(str(tmp))
        os.replace(tmp, path)

    def load(self, path: Path) -> dict[str, Any]:
        self._load_weights(path)
        return model_params(self._model())

    def _model(self) -> Any:
        if self.model is None:
            raise JobError("the Keras model is not loaded yet (initial_params comes first)")
        return self.model

    def _load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise JobError(f"Keras weights {path} do not exist (on the server)")
        try:
            self._model().load_weights(str(path))
        except Exception as exc:
            raise JobError(f"cannot load Keras weights {path} into the model: {exc}") from exc

    def _build(self, job_dir: Path) -> Any:
        assert self.factory is not None
        target = self.factory["path"]
        try:
            model = build_factory(self.factory, job_dir)
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"cannot build the Keras model {target}: {exc}") from exc
        import keras

        if not isinstance(model, keras.Model):
            raise JobError(f"model {target} built a {type(model).__name__}, not a keras.Model")
        from ember_tf.framework import ensure_built

        try:
            return ensure_built(model, self.input_shape)
        except ValueError as exc:
            raise JobError(str(exc)) from None


def _resolve(job_dir: Path, path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else job_dir / p


def _load_keras(path: Path) -> Any:
    """A ``.keras`` file, with Keras's safe mode (no Python lambdas deserialized)."""
    if not path.is_file():
        raise JobError(f"Keras model file {path} does not exist (on the server)")
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise JobError(f"cannot load the Keras model {path}: {exc}") from exc
