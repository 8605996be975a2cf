"""SCAFFOLD's client side (Karimireddy et al. 2020, option II), for Keras training scripts.

The API of NVFlare's ``TFScaffoldHelper`` (``init``, ``load_global_controls``,
``get_params``, ``model_update``, ``terms_update``, ``get_delta_controls``;
``ScaffoldCallback`` and ``get_lr_values``), plus three calls that read and write the task's
meta for a ``tensorflow-scaffold`` job::

    scaffold = TFScaffoldHelper()
    while flare.is_running():
        input_model = flare.receive()
        load_weights(model, input_model)
        scaffold.start_round(model, input_model.meta)     # c, and the global weights x
        for x, y in batches:                              # a custom training loop
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            scaffold.step(model, lr)                      # y -= lr * (c - c_i)
        # or model.fit(..., callbacks=[ScaffoldCallback(scaffold)]) instead of the loop
        meta = scaffold.end_round(model, lr)              # c_i+ and {"scaffold_c_diff": ...}
        flare.send(to_flmodel(model, num_steps=steps, meta=meta))

Control variates exist for the model's trainable weights and are keyed as the exchange
format, ``"<layer name>/<index>"`` (what the server's ``scaffold_c_global`` holds); they are
float32 (float64 for float64 weights). Non-trainable weights (batch-norm statistics) have
none: the server counts them as zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ember_tf.convert import from_keras_weights, to_numpy, trainable_weights

#: task meta key: the server's control variates (key -> array; zeros in round 0)
SCAFFOLD_C_GLOBAL = "scaffold_c_global"
#: result meta key: the site's control-variate change ``c_i+ - c_i`` (key -> array)
SCAFFOLD_C_DIFF = "scaffold_c_diff"

Controls = dict[str, tf.Tensor]


def get_lr_values(optimizer: Any) -> float:
    """The learning rate a Keras optimizer uses for its next step (a schedule's current
    value)."""
    return _lr(optimizer.learning_rate)


def _lr(value: Any) -> float:
    return float(to_numpy(value))


def _control_dtype(dtype: Any) -> tf.DType:
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


class TFScaffoldHelper:
    """A site's SCAFFOLD state: the global control ``c`` and its own ``c_i``.

    ``c_i`` persists across rounds in this object (create one helper per site, outside the
    round loop). The dicts :meth:`get_params` returns are never modified in place: a later
    :meth:`load_global_controls` or :meth:`terms_update` replaces them.
    """

    def __init__(self) -> None:
        self.cnt = 0  #: local steps (``model_update`` calls) since :meth:`get_params`
        self.c_global: Controls | None = None
        self.c_local: Controls | None = None
        self.c_delta_para: dict[str, np.ndarray[Any, Any]] | None = None
        self._global_params: dict[str, np.ndarray[Any, Any]] | None = None
        self._round: tuple[Controls, Controls] | None = None

    # -- NVFlare's API --------------------------------------------------------------------
    def init(self, model: Any) -> None:
        """Zero ``c`` and ``c_i`` for each trainable weight of ``model``."""
        weights = trainable_weights(model)
        if not weights:
            raise ValueError("the model has no trainable weights to control (is it built?)")
        zeros = {
            key: tf.zeros(tuple(w.shape), _control_dtype(w.dtype)) for key, w in weights.items()
        }
        self.c_global = zeros
        self.c_local = dict(zeros)
        self.c_delta_para = None
        self.cnt = 0

    def load_global_controls(self, weights: Mapping[str, Any] | None) -> None:
        """Set ``c`` from the server's ``key -> array`` (``scaffold_c_global``; per-layer
        lists are accepted too; None or empty: zeros).

        Keys that are not trainable weights (batch-norm statistics) are ignored; a trainable
        weight missing from a non-empty ``weights``, or of another shape, is an error."""
        current = self._controls()[0]
        if not weights:
            self.c_global = {k: tf.zeros_like(v) for k, v in current.items()}
            return
        flat = from_keras_weights(weights)
        new: Controls = {}
        for key, ref in current.items():
            if key not in flat:
                raise ValueError(
                    f"the global control variates lack weight {key!r} (they hold "
                    f"{len(flat)} entries); does the server's model match this one?"
                )
            value = flat[key]
            if tuple(value.shape) != tuple(ref.shape):
                raise ValueError(
                    f"global control variate {key!r} has shape {tuple(value.shape)}, the "
                    f"weight has {tuple(ref.shape)}"
                )
            new[key] = tf.constant(value, dtype=ref.dtype)
        self.c_global = new

    def get_params(self) -> tuple[Controls, Controls]:
        """``(c, c_i)`` for this round's :meth:`model_update` calls (and :meth:`step` and
        :class:`ScaffoldCallback`); restarts the step count."""
        self.cnt = 0
        self._round = self._controls()
        return self._round

    def model_update(
        self, model: Any, curr_lr: Any, c_global_para: Controls, c_local_para: Controls
    ) -> None:
        """After an optimizer step: ``y -= curr_lr * (c - c_i)`` for every controlled weight;
        counts the step."""
        lr = _lr(curr_lr)
        weights = trainable_weights(model)
        for key, c_local in c_local_para.items():
            variable = _weight(weights, key)
            correction = tf.cast(lr * (c_global_para[key] - c_local), variable.dtype)
            variable.assign_sub(correction)
        self.cnt += 1

    def terms_update(
        self,
        model: Any,
        curr_lr: Any,
        c_global_para: Controls,
        c_local_para: Controls,
        model_global: Any,
    ) -> None:
        """After the round's training: ``c_i+ = c_i - c + (x - y) / (K * curr_lr)`` with
        ``x`` the global weights the round started from (``model_global``: a Keras model, or
        params in either format) and ``K`` the local steps; keeps ``c_i+`` and the delta
        ``c_i+ - c_i`` (numpy, :meth:`get_delta_controls`)."""
        if self.cnt <= 0:
            raise ValueError(
                "terms_update needs at least one model_update call this round (K = 0 steps)"
            )
        lr = _lr(curr_lr)
        if not lr > 0:
            raise ValueError(f"curr_lr must be > 0, got {curr_lr!r}")
        weights = trainable_weights(model)
        if isinstance(model_global, Mapping):
            global_params = from_keras_weights(model_global)
        else:
            global_params = {k: to_numpy(v) for k, v in trainable_weights(model_global).items()}
        scale = 1.0 / (self.cnt * lr)
        new_local: Controls = {}
        delta: dict[str, np.ndarray[Any, Any]] = {}
        for key, c_local in c_local_para.items():
            if key not in global_params:
                raise ValueError(f"model_global lacks weight {key!r}")
            y = tf.cast(tf.convert_to_tensor(_weight(weights, key)), c_local.dtype)
            x = tf.constant(global_params[key], dtype=c_local.dtype)
            c_new = c_local - c_global_para[key] + (x - y) * tf.constant(scale, c_local.dtype)
            new_local[key] = c_new
            delta[key] = (c_new - c_local).numpy()
        self.c_local = new_local
        self.c_delta_para = delta

    def get_delta_controls(self) -> dict[str, np.ndarray[Any, Any]]:
        """``c_i+ - c_i`` of the last :meth:`terms_update`, as numpy arrays by exchange key."""
        if self.c_delta_para is None:
            raise ValueError("c_delta_para has not been computed yet (call terms_update)")
        return self.c_delta_para

    # -- Ember conveniences ---------------------------------------------------------------
    def start_round(
        self, model: Any, meta: Mapping[str, Any] | None = None
    ) -> tuple[Controls, Controls]:
        """Begin a round on ``model`` just loaded with the global weights: init on first use,
        load ``c`` from ``meta["scaffold_c_global"]``, remember ``x`` and return
        ``(c, c_i)``."""
        if self.c_local is None:
            self.init(model)
        self.load_global_controls((meta or {}).get(SCAFFOLD_C_GLOBAL))
        self._global_params = {
            key: np.array(to_numpy(w), copy=True) for key, w in trainable_weights(model).items()
        }
        return self.get_params()

    def step(self, model: Any, curr_lr: Any) -> None:
        """:meth:`model_update` with this round's ``(c, c_i)``; call after each optimizer
        step."""
        c_global, c_local = self._started()
        self.model_update(model, curr_lr, c_global, c_local)

    def correct_gradients(self, model: Any, grads: Sequence[Any]) -> list[Any]:
        """The gradients of ``model.trainable_variables`` plus ``c - c_i``, to apply instead
        of calling :meth:`step` after the optimizer step (the same update for plain SGD; with
        momentum or Adam the correction goes through the optimizer); counts the step."""
        c_global, c_local = self._started()
        keys = {id(w): key for key, w in trainable_weights(model).items()}
        variables = list(model.trainable_variables)
        if len(grads) != len(variables):
            raise ValueError(
                f"{len(grads)} gradients for {len(variables)} trainable variables: pass the "
                "gradients of model.trainable_variables, in that order"
            )
        out: list[Any] = []
        for variable, grad in zip(variables, grads, strict=True):
            key = keys.get(id(variable))
            if key is None or key not in c_local:
                out.append(grad)
                continue
            correction = tf.cast(c_global[key] - c_local[key], variable.dtype)
            out.append(correction if grad is None else grad + correction)
        self.cnt += 1
        return out

    def end_round(self, model: Any, curr_lr: Any) -> dict[str, Any]:
        """:meth:`terms_update` against the round's starting weights; returns the meta to
        send: ``{"scaffold_c_diff": {key: array}}``."""
        c_global, c_local = self._started()
        if self._global_params is None:
            raise ValueError("call start_round(model, input_model.meta) first")
        self.terms_update(model, curr_lr, c_global, c_local, self._global_params)
        self._round = self._global_params = None
        return {SCAFFOLD_C_DIFF: self.get_delta_controls()}

    def _controls(self) -> tuple[Controls, Controls]:
        if self.c_global is None or self.c_local is None:
            raise ValueError("call init(model) (or start_round) first")
        return self.c_global, self.c_local

    def _started(self) -> tuple[Controls, Controls]:
        if self._round is None:
            raise ValueError("call start_round(model, input_model.meta) (or get_params) first")
        return self._round


class ScaffoldCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """SCAFFOLD's correction in ``model.fit``: after every training batch,
    ``scaffold_helper.step(model, lr)`` with the learning rate that batch's optimizer step
    used. Start the round first (``start_round`` or NVFlare's ``get_params``). Keras calls
    batch callbacks once per ``steps_per_execution`` steps: keep it at 1 (the default).

    NVFlare's ``ScaffoldCallback`` corrects once an epoch; this one corrects after every
    local step, as the algorithm does, so ``K`` counts steps."""

    def __init__(self, scaffold_helper: TFScaffoldHelper) -> None:
        super().__init__()
        self.scaffold_helper = scaffold_helper
        self._lr: float | None = None

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._lr = get_lr_values(self.model.optimizer)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        lr = self._lr if self._lr is not None else get_lr_values(self.model.optimizer)
        self.scaffold_helper.step(self.model, lr)


def _weight(weights: Mapping[str, Any], key: str) -> Any:
    if key not in weights:
        raise ValueError(f"the model has no trainable weight {key!r}")
    return weights[key]
