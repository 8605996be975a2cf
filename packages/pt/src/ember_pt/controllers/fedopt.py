"""FedOpt: FedAvg whose server applies the averaged update with a torch optimizer.

Importing this module does not import torch (the recipe reads its defaults and checks);
the controller imports it when it is built on the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from ember.recipes import check_class_args

if TYPE_CHECKING:
    import torch

#: NVFlare 2.7's default server optimizer
DEFAULT_OPTIMIZER_ARGS: dict[str, Any] = {
    "path": "torch.optim.SGD",
    "args": {"lr": 1.0, "momentum": 0.6},
}
#: NVFlare 2.7's default scheduler; ``T_max`` (absent here) becomes the job's ``num_rounds``
DEFAULT_LR_SCHEDULER_ARGS: dict[str, Any] = {
    "path": "torch.optim.lr_scheduler.CosineAnnealingLR",
    "args": {"eta_min": 0.9},
}


def class_args(name: str, value: Any, num_rounds: int | None = None) -> dict[str, Any]:
    """:func:`ember.recipes.check_class_args`; a ``CosineAnnealingLR`` without ``T_max`` gets
    ``T_max=num_rounds`` when ``num_rounds`` is given."""
    out = check_class_args(name, value)
    if num_rounds is not None and out["path"].endswith(".CosineAnnealingLR"):
        out["args"].setdefault("T_max", num_rounds)
    return out


class FedOptController(FedAvgController):
    """FedAvg whose new global model is a server optimizer's step (Reddi et al., 2021).

    Each round the sites' average (FULL models, or DIFFs added to the global model, as in
    FedAvg) gives the pseudo-gradient ``g = global - averaged_global``; the server sets it as
    the gradient of its copy of the global model and calls ``optimizer.step()``, then
    ``lr_scheduler.step()``. With ``SGD(lr=1, momentum=0)`` this is FedAvg.

    The optimizer (``optimizer_args``; default SGD(lr=1.0, momentum=0.6)) and scheduler
    (``lr_scheduler_args``; default CosineAnnealingLR(T_max=num_rounds, eta_min=0.9);
    None for none) are built in the first round over every floating-point entry the sites
    average; their state (momentum) persists across rounds. Other entries (integer counters
    such as ``num_batches_tracked``) take the average; excluded ones keep their value.
    """

    def __init__(
        self,
        *args: Any,
        optimizer_args: dict[str, Any] | None = None,
        lr_scheduler_args: dict[str, Any] | None = DEFAULT_LR_SCHEDULER_ARGS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.optimizer_args = class_args(
            "optimizer_args", DEFAULT_OPTIMIZER_ARGS if optimizer_args is None else optimizer_args
        )
        self.lr_scheduler_args = (
            None
            if lr_scheduler_args is None
            else class_args("lr_scheduler_args", lr_scheduler_args, self.num_rounds)
        )
        # a typo in a path fails the job before the first round, not after it
        self._optimizer_class = resolve_class("optimizer_args", self.optimizer_args["path"])
        self._scheduler_class = (
            None
            if self.lr_scheduler_args is None
            else resolve_class("lr_scheduler_args", self.lr_scheduler_args["path"])
        )
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: Any = None
        # the optimizer's parameters by key; each round they are pointed at new arrays
        self._tensors: dict[str, torch.Tensor] = {}
        self._pending: dict[str, Any] | None = None  # a checkpoint's optimizer state

    def checkpoint_state(self) -> dict[str, Any]:
        """FedAvg's state and the server optimizer's (and scheduler's) state dicts, tensors
        as numpy arrays."""
        state = super().checkpoint_state()
        if self.optimizer is not None:
            state["fedopt"] = {
                "keys": list(self._tensors),
                "optimizer": _to_numpy(self.optimizer.state_dict()),
                "lr_scheduler": None
                if self.lr_scheduler is None
                else _to_numpy(self.lr_scheduler.state_dict()),
            }
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        super().restore_state(state)
        self._pending = state.get("fedopt")

    def kept_for_update(self, params: dict[str, Any]) -> dict[str, Any]:
        """All of the global model: the pseudo-gradient is taken against it."""
        return params

    def next_global(self, kept: dict[str, Any], average: WeightedAverage) -> dict[str, Any]:
        """One server optimizer step from the round's global model along the average."""
        import torch

        self.check_average(average)
        diff = average.params_type == ParamsType.DIFF
        old_params: dict[str, Any] = convert_params(kept, self.server_format, NUMPY)
        new = dict(old_params)
        stepped: dict[str, np.ndarray[Any, Any]] = {}
        grads: dict[str, np.ndarray[Any, Any]] = {}
        for key, value in average.params().items():
            old = old_params.get(key)
            if not (isinstance(old, np.ndarray) and np.issubdtype(old.dtype, np.floating)):
                # not a float tensor of the global model: the average replaces it (as FedAvg)
                base = {} if old is None else {key: old}
                new[key] = apply_update(base, {key: value}, average.params_type)[key]
                continue
            if np.shape(value) != old.shape:
                raise JobError(
                    f"params[{key!r}] has shape {np.shape(value)} in the sites' average but "
                    f"{old.shape} in the global model"
                )
            grads[key] = _pseudo_gradient(old, value, diff)
            # stepped in place, so a copy: the round's global model may still be read
            # (streamed to a late site) and is what the update started from
            stepped[key] = np.array(old, order="C")
            new[key] = stepped[key]
        if stepped:
            self._step(torch, stepped, grads)
        return convert_params(new, NUMPY, self.server_format)  # type: ignore[no-any-return]

    def _step(
        self,
        torch: Any,
        params: dict[str, np.ndarray[Any, Any]],
        grads: dict[str, np.ndarray[Any, Any]],
    ) -> None:
        if self.optimizer is None:
            self._tensors = {k: torch.from_numpy(v) for k, v in params.items()}
            self.optimizer = self._build(
                "optimizer_args",
                self._optimizer_class,
                list(self._tensors.values()),
                self.optimizer_args["args"],
            )
            if self._scheduler_class is not None:
                assert self.lr_scheduler_args is not None
                self.lr_scheduler = self._build(
                    "lr_scheduler_args",
                    self._scheduler_class,
                    self.optimizer,
                    self.lr_scheduler_args["args"],
                )
            if self._pending is not None:  # resumed: the optimizer goes on where it was
                self._tensors = {k: self._tensors[k] for k in self._pending["keys"]}
                self.optimizer.param_groups[0]["params"] = list(self._tensors.values())
                self.optimizer.load_state_dict(_to_torch(torch, self._pending["optimizer"]))
                if self.lr_scheduler is not None and self._pending["lr_scheduler"] is not None:
                    self.lr_scheduler.load_state_dict(
                        _to_torch(torch, self._pending["lr_scheduler"])
                    )
                self._pending = None
        elif set(params) != set(self._tensors):
            raise JobError(
                "FedOpt: the sites' averaged keys changed between rounds "
                f"(now {sorted(params)}, first {sorted(self._tensors)}); its optimizer "
                "keeps state per key"
            )
        else:
            for key, tensor in self._tensors.items():
                tensor.data = torch.from_numpy(params[key])  # same tensor: state is kept
        for key, tensor in self._tensors.items():
            tensor.grad = torch.from_numpy(grads[key])
        try:
            self.optimizer.step()
        finally:
            for tensor in self._tensors.values():
                tensor.grad = None
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()

    @staticmethod
    def _build(name: str, cls: Any, first: Any, args: dict[str, Any]) -> Any:
        try:
            return cls(first, **args)
        except Exception as exc:
            raise JobError(f"{name}: cannot build {cls.__qualname__}(**{args!r}): {exc}") from exc


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


def _to_numpy(value: Any) -> Any:
    """A state dict with its tensors as numpy arrays (what a checkpoint holds)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _to_torch(torch: Any, value: Any) -> Any:
    """The reverse of :func:`_to_numpy`."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _to_torch(torch, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_torch(torch, v) for v in value)
    return value
