"""FedOpt: FedAvg whose server applies the averaged update with a Keras optimizer.

Importing this module does not import tensorflow or keras (the recipe reads its defaults and
checks); the controller imports keras when it is built on the server.
"""

from __future__ import annotations

import inspect
import numbers
import re
from typing import Any

import numpy as np

from ember.common import ParamsType
from ember.controllers import (
    NUMPY,
    FedAvgController,
    JobError,
    WeightedAverage,
    apply_update,
    convert_params,
    resolve_class,
)
from ember.recipes import RecipeArgumentError, check_class_args

#: NVFlare's default server optimizer for TensorFlow (``nvflare.app_opt.tf.fedopt_ctl.FedOpt``)
DEFAULT_OPTIMIZER_ARGS: dict[str, Any] = {
    "path": "keras.optimizers.SGD",
    "args": {"learning_rate": 1.0, "momentum": 0.6},
}
#: NVFlare's default schedule, ``CosineDecay(initial_learning_rate=1.0, decay_steps=num_rounds,
#: alpha=0.9)``: ``decay_steps`` (absent here) becomes the job's ``num_rounds`` and
#: ``initial_learning_rate`` (absent here) the optimizer's learning rate, 1.0 by default
DEFAULT_LR_SCHEDULER_ARGS: dict[str, Any] = {
    "path": "keras.optimizers.schedules.CosineDecay",
    "args": {"alpha": 0.9},
}
#: Keras's schedules that start from ``initial_learning_rate`` (filled in at the recipe)
_INITIAL_LR_SCHEDULES = (
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "PolynomialDecay",
)

class_args = check_class_args  # NVFlare's optimizer_args / lr_scheduler_args shape


def scheduler_args(
    value: Any, num_rounds: int | None = None, optimizer_args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``lr_scheduler_args`` checked as :func:`class_args`, with what the job decides filled in:
    ``decay_steps`` given as None (NVFlare's way) or left out of a ``CosineDecay`` becomes
    ``num_rounds`` (the schedule steps once a round); a Keras schedule without
    ``initial_learning_rate`` starts from ``optimizer_args``' numeric ``learning_rate``."""
    out = class_args("lr_scheduler_args", value)
    path, args = out["path"], out["args"]
    cls_name = path.rsplit(".", 1)[1]
    if num_rounds is not None and (
        ("decay_steps" in args and args["decay_steps"] is None)
        or ("decay_steps" not in args and cls_name == "CosineDecay")
    ):
        args["decay_steps"] = num_rounds
    if optimizer_args is not None and "initial_learning_rate" not in args:
        lr = optimizer_args.get("args", {}).get("learning_rate")
        if cls_name in _INITIAL_LR_SCHEDULES and _is_number(lr):
            args["initial_learning_rate"] = float(lr)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class FedOptController(FedAvgController):
    """FedAvg whose new global model is a server optimizer's step (Reddi et al., 2021), as
    NVFlare's TensorFlow ``FedOpt``.

    Each round the sites' average (FULL models, or DIFFs added to the global model, as in
    FedAvg) gives the pseudo-gradient ``g = global - averaged_global``; the server applies
    it with ``optimizer.apply_gradients`` to a Keras variable per entry that holds the
    global model. With ``SGD(learning_rate=1, momentum=0)`` this is FedAvg.

    The optimizer (``optimizer_args``; default ``keras.optimizers.SGD(learning_rate=1.0,
    momentum=0.6)``) is built with the controller; ``lr_scheduler_args`` names a Keras
    ``LearningRateSchedule`` that becomes its ``learning_rate`` (default
    ``CosineDecay(initial_learning_rate=<the optimizer's>, decay_steps=num_rounds,
    alpha=0.9)``; None for none). The schedule is evaluated at the optimizer's step count,
    which advances once a round. The optimizer's state (momentum, Adam's moments) persists
    across rounds.

    What is stepped: the trainable weights of the persistor's Keras model (every
    floating-point entry when the persistor has no Keras model). The other entries take
    the average, as in FedAvg (Keras's non-trainable weights, such as batch-norm moving
    statistics, and integer entries); excluded ones keep their value.
    """

    def __init__(
        self,
        *args: Any,
        optimizer_args: dict[str, Any] | None = None,
        lr_scheduler_args: dict[str, Any] | None = DEFAULT_LR_SCHEDULER_ARGS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.optimizer_args = class_args(
                "optimizer_args",
                DEFAULT_OPTIMIZER_ARGS if optimizer_args is None else optimizer_args,
            )
            self.lr_scheduler_args = (
                None
                if lr_scheduler_args is None
                else scheduler_args(lr_scheduler_args, self.num_rounds, self.optimizer_args)
            )
        except RecipeArgumentError as exc:
            raise JobError(str(exc)) from None
        self.lr_scheduler: Any = None
        # built now: a typo in a path or an argument fails the job before the first round
        self.optimizer: Any = self._build_optimizer()
        #: one Keras variable per stepped entry (created in the first round), by key
        self.variables: dict[str, Any] = {}
        self._trainable: set[str] | None = None

    def _build_optimizer(self) -> Any:
        import keras

        path, args = self.optimizer_args["path"], self.optimizer_args["args"]
        optimizer = _build("optimizer_args", resolve_class("optimizer_args", path), args)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise JobError(
                f"optimizer_args: {path} built a {type(optimizer).__name__}, not a "
                "keras.optimizers.Optimizer"
            )
        if self.lr_scheduler_args is None:
            return optimizer
        path = self.lr_scheduler_args["path"]
        cls = resolve_class("lr_scheduler_args", path)
        args = self.lr_scheduler_args["args"]
        if "initial_learning_rate" not in args and _takes(cls, "initial_learning_rate"):
            # the optimizer's own learning rate (its class's default when not given)
            lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            args["initial_learning_rate"] = lr
        schedule = _build("lr_scheduler_args", cls, args)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise JobError(
                f"lr_scheduler_args: {path} built a {type(schedule).__name__}, not a "
                "keras.optimizers.schedules.LearningRateSchedule"
            )
        optimizer.learning_rate = schedule  # as NVFlare: the schedule drives the optimizer
        self.lr_scheduler = schedule
        return optimizer

    def kept_for_update(self, params: dict[str, Any]) -> dict[str, Any]:
        """All of the global model: the pseudo-gradient is taken against it."""
        return params

    def next_global(self, kept: dict[str, Any], average: WeightedAverage) -> dict[str, Any]:
        """One server optimizer step from the round's global model along the average."""
        self.check_average(average)
        diff = average.params_type == ParamsType.DIFF
        old_params: dict[str, Any] = convert_params(kept, self.server_format, NUMPY)
        trainable = self._trainable_keys()
        new = dict(old_params)
        stepped: dict[str, np.ndarray[Any, Any]] = {}
        grads: dict[str, np.ndarray[Any, Any]] = {}
        for key, value in average.params().items():
            old = old_params.get(key)
            if not (isinstance(old, np.ndarray) and np.issubdtype(old.dtype, np.floating)) or (
                trainable is not None and key not in trainable
            ):
                # not a trainable float weight of the global model: the average replaces it
                base = {} if old is None else {key: old}
                new[key] = apply_update(base, {key: value}, average.params_type)[key]
                continue
            if np.shape(value) != old.shape:
                raise JobError(
                    f"params[{key!r}] has shape {np.shape(value)} in the sites' average but "
                    f"{old.shape} in the global model"
                )
            grads[key] = _pseudo_gradient(old, value, diff)
            stepped[key] = old
        if stepped:
            new.update(self._step(stepped, grads))
        return convert_params(new, NUMPY, self.server_format)  # type: ignore[no-any-return]

    def _step(
        self, params: dict[str, np.ndarray[Any, Any]], grads: dict[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        """``optimizer.apply_gradients`` on the variables set to ``params``; new arrays (the
        round's global model may still be read: streamed to a late site)."""
        import keras

        if not self.variables:
            self.variables = {
                key: keras.Variable(value, dtype=value.dtype.name, name=_variable_name(key))
                for key, value in params.items()
            }
        elif set(params) != set(self.variables):
            raise JobError(
                "FedOpt: the sites' averaged keys changed between rounds "
                f"(now {sorted(params)}, first {sorted(self.variables)}); its optimizer "
                "keeps state per key"
            )
        else:
            for key, variable in self.variables.items():
                variable.assign(params[key])  # the same variable: the optimizer's state is kept
        pairs = [
            (keras.ops.convert_to_tensor(grads[key], dtype=variable.dtype), variable)
            for key, variable in self.variables.items()
        ]
        try:
            self.optimizer.apply_gradients(pairs)
        except Exception as exc:
            raise JobError(
                f"FedOpt: {type(self.optimizer).__name__}.apply_gradients failed: {exc}"
            ) from exc
        return {
            key: np.array(keras.ops.convert_to_numpy(variable), copy=True)
            for key, variable in self.variables.items()
        }

    def _trainable_keys(self) -> set[str] | None:
        """The exchange keys of the persistor's Keras model's trainable weights, or None."""
        if self._trainable is None:
            model = getattr(self.persistor, "model", None)
            if model is None:
                return None
            import keras

            if not isinstance(model, keras.Model):
                return None
            from ember_tf.convert import trainable_weights

            self._trainable = set(trainable_weights(model))
        return self._trainable


def _build(name: str, cls: Any, args: dict[str, Any]) -> Any:
    try:
        return cls(**args)
    except Exception as exc:
        raise JobError(
            f"{name}: cannot build {getattr(cls, '__qualname__', cls)}(**{args!r}): {exc}"
        ) from exc


def _takes(cls: Any, parameter: str) -> bool:
    try:
        return parameter in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _variable_name(key: str) -> str:
    """A Keras variable name for an exchange key (Keras forbids ``/`` in names)."""
    return re.sub(r"[^\w.-]", "_", key) or "param"


def _pseudo_gradient(old: np.ndarray[Any, Any], value: Any, diff: bool) -> np.ndarray[Any, Any]:
    """``old - averaged`` (FULL) or ``-averaged_diff`` (DIFF), in ``old``'s dtype; written
    into the average's own array when it can be (it is not needed afterwards)."""
    if isinstance(value, np.ndarray) and value.dtype == old.dtype and value.flags.writeable:
        if diff:
            np.negative(value, out=value)
        else:
            np.subtract(old, value, out=value)
        return value
    grad = -np.asarray(value) if diff else old - np.asarray(value)
    return np.array(grad, dtype=old.dtype)
