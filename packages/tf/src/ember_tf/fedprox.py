"""FedProx's proximal term for Keras training scripts, and the ``mu`` the recipe sends.

In a custom training loop::

    input_model = flare.receive()
    load_weights(model, input_model)
    proximal = TFFedProxLoss(fedprox_mu(input_model, default=0.0))
    global_weights = input_model.params            # the weights this round started from
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True)) + proximal(model, global_weights)
    grads = tape.gradient(loss, model.trainable_variables)

With ``model.fit``: ``model.compile(optimizer, loss=proximal.wrap(loss_fn, model,
global_weights))``, compiled again each round (the global weights are constants of the
compiled loss). The term pulls the model's trainable weights towards the global ones.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from ember_tf.convert import flat_weights, trainable_weights

#: the key of ``FLModel.meta`` under which ``FedProxRecipe`` sends ``fedprox_mu``
FEDPROX_MU = "fedprox_mu"


def check_mu(mu: Any, name: str = "mu") -> float:
    """``mu`` as a float, if it is a finite real number >= 0; a ``ValueError`` otherwise."""
    if (
        not isinstance(mu, numbers.Real)
        or isinstance(mu, bool)
        or not math.isfinite(float(mu))
        or mu < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {mu!r}")
    return float(mu)


def _is_model(value: Any) -> bool:
    return hasattr(value, "layers") and hasattr(value, "trainable_weights")


def _pairs(local: Any, target: Any) -> list[tuple[Any, Any]]:
    """(trainable weight, its global value) pairs: by exchange key when ``local`` is a model
    (``target`` a model or params in either format), by position for sequences."""
    if _is_model(local):
        weights = trainable_weights(local)
        if _is_model(target):
            targets: Mapping[str, Any] = trainable_weights(target)
        elif isinstance(target, Mapping):
            targets = flat_weights(target)
        else:
            return _by_position(list(weights.values()), target)
        missing = [key for key in weights if key not in targets]
        if missing:
            raise KeyError(
                f"the global model has no weight {missing[0]!r} (of {len(missing)} missing; "
                f"it has {sorted(targets)[:8]}); give the params or model this round started from"
            )
        return [(weights[key], targets[key]) for key in weights]
    if isinstance(local, Mapping):
        raise TypeError(
            "input_model must be the Keras model being trained or a list of its trainable "
            "variables, not a mapping"
        )
    target_list = list(target.trainable_weights) if _is_model(target) else target
    return _by_position(list(local), target_list)


def _by_position(local: list[Any], target: Any) -> list[tuple[Any, Any]]:
    if isinstance(target, Mapping) or not isinstance(target, Sequence):
        raise TypeError(
            "with a list of variables as input_model, the global weights must be a list in "
            f"the same order (e.g. the model's trainable_variables copied), got {type(target)}"
        )
    if len(target) != len(local):
        raise ValueError(
            f"{len(local)} trainable weights but {len(target)} global weights to match them"
        )
    return list(zip(local, target, strict=True))


def _result_dtype(weights: list[Any]) -> tf.DType:
    dtypes = {tf.as_dtype(w.dtype) for w in weights}
    return tf.float64 if tf.float64 in dtypes else tf.float32


class TFFedProxLoss:
    """``mu / 2 * sum over trainable weights of ||w - w_global||^2`` (FedProx's proximal
    term, NVFlare's ``TFFedProxLoss``), a scalar tensor to add to the loss.

    ``proximal(input_model, target_model)``: ``input_model`` is the Keras model being
    trained (or a list of its trainable variables); ``target_model`` the global weights
    it started from: the received params (``input_model.params``, ``{layer: [arrays]}``
    or ``{"layer/i": array}``), a Keras model holding them, or, with a list as
    ``input_model``, a list in the same order (NVFlare's ``copy.deepcopy(
    model.trainable_variables)``). The global weights are constants: gradients flow into
    the trained model only. Float64 weights give a float64 term, others float32.
    """

    def __init__(self, mu: float = 0.01) -> None:
        self.mu = check_mu(mu)

    def __call__(self, input_model: Any, target_model: Any) -> tf.Tensor:
        return self.model_difference_norm(target_model, input_model) * (self.mu / 2)

    def model_difference_norm(self, global_model: Any, local_model: Any) -> tf.Tensor:
        """``sum ||w_local - w_global||^2`` over the trainable weights (NVFlare's name and
        argument order)."""
        pairs = _pairs(local_model, global_model)
        if not pairs:  # a model without trainable weights
            return tf.zeros((), tf.float32)
        dtype = _result_dtype([w for w, _ in pairs])
        terms = []
        for weight, target in pairs:
            value = tf.convert_to_tensor(weight)
            other = tf.stop_gradient(tf.cast(tf.convert_to_tensor(target), value.dtype))
            if other.shape != value.shape:
                raise ValueError(
                    f"a trainable weight of shape {value.shape} has a global weight of shape "
                    f"{other.shape}"
                )
            terms.append(tf.cast(tf.reduce_sum(tf.square(value - other)), dtype))
        return tf.add_n(terms)

    def wrap(self, loss_fun: Any, input_model: Any, target_model: Any) -> FedProxWrappedLoss:
        """``loss_fun(y_true, y_pred) + proximal(input_model, target_model)``, a loss for
        ``model.compile`` (compile again when the global weights change)."""
        return FedProxWrappedLoss(self, loss_fun, input_model, target_model)

    def __repr__(self) -> str:
        return f"TFFedProxLoss(mu={self.mu})"


class FedProxWrappedLoss:
    """A Keras loss (``y_true, y_pred``) plus the proximal term, from :meth:`TFFedProxLoss.wrap`.

    The global weights are converted to constants once, when the loss is made."""

    def __init__(
        self, proximal: TFFedProxLoss, loss_fun: Any, input_model: Any, target_model: Any
    ) -> None:
        self.proximal = proximal
        self.loss_fun = loss_fun
        self.input_model = input_model
        if isinstance(target_model, Mapping):
            target_model = {
                k: tf.convert_to_tensor(v) for k, v in flat_weights(target_model).items()
            }
        elif not _is_model(target_model):
            target_model = [tf.convert_to_tensor(v) for v in target_model]
        self.target_model = target_model
        self.__name__ = "fedprox_loss"  # Keras names a function loss after it

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tf.Tensor:
        if sample_weight is None:
            base = self.loss_fun(y_true, y_pred)
        else:
            base = self.loss_fun(y_true, y_pred, sample_weight=sample_weight)
        base = tf.convert_to_tensor(base)
        term = self.proximal(self.input_model, self.target_model)
        return base + tf.cast(term, base.dtype)


def fedprox_mu(input_model: Any, default: float | None = None) -> float | None:
    """The ``fedprox_mu`` the recipe put in a received ``FLModel``'s meta, else ``default``."""
    meta = getattr(input_model, "meta", None) or {}
    value = meta.get(FEDPROX_MU)
    return default if value is None else check_mu(value, FEDPROX_MU)
