"""SCAFFOLD's client side (Karimireddy et al. 2020, option II), for Ember training scripts.

The API of NVFlare's ``PTScaffoldHelper`` (``init``, ``load_global_controls``, ``get_params``,
``model_update``, ``terms_update``, ``get_delta_controls``), plus three calls that read and
write the task's meta for a ``pytorch-scaffold`` job::

    scaffold = PTScaffoldHelper()
    scaffold.init(model)
    while flare.is_running():
        input_model = flare.receive()
        model.load_state_dict(to_state_dict(input_model.params))
        scaffold.start_round(model, input_model.meta)     # c, and the global params x
        for batch in loader:
            ...; optimizer.step()
            scaffold.step(model, lr)                       # y -= lr * (c - c_i)
        meta = scaffold.end_round(model, lr)               # c_i+ and {"scaffold_c_diff": ...}
        flare.send(FLModel(params=model.state_dict(), meta={**meta, ...}))

Control variates exist for the model's floating-point ``named_parameters()`` (buffers such as
batch-norm statistics have none) and are kept in float32 (float64 for float64 parameters) on
each parameter's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ember_pt.convert import to_tensor

#: task meta key: the server's control variates (name -> array; absent or zeros in round 0)
SCAFFOLD_C_GLOBAL = "scaffold_c_global"
#: result meta key: the site's control-variate change ``c_i+ - c_i`` (name -> array)
SCAFFOLD_C_DIFF = "scaffold_c_diff"

Controls = dict[str, torch.Tensor]


def get_lr_values(optimizer: torch.optim.Optimizer) -> list[float]:
    """The current learning rate of each of ``optimizer``'s parameter groups."""
    return [float(group["lr"]) for group in optimizer.param_groups]


class PTScaffoldHelper:
    """A site's SCAFFOLD state: the global control ``c`` and its own ``c_i``.

    ``c_i`` persists across rounds in this object (create one helper per site, outside the
    round loop). Dicts returned by :meth:`get_params` are never modified in place: a later
    :meth:`load_global_controls` or :meth:`terms_update` replaces them.
    """

    def __init__(self) -> None:
        self.cnt = 0  #: optimizer steps (``model_update`` calls) since :meth:`get_params`
        self.c_global: Controls | None = None
        self.c_local: Controls | None = None
        self.c_delta_para: dict[str, np.ndarray[Any, Any]] | None = None
        self._global_params: Controls | None = None
        self._round: tuple[Controls, Controls] | None = None

    # -- NVFlare's API --------------------------------------------------------------------
    def init(self, model: nn.Module) -> None:
        """Zero ``c`` and ``c_i`` for each floating-point parameter of ``model``."""
        params = _float_params(model)
        if not params:
            raise ValueError("the model has no floating-point parameters to control")
        zeros = {name: torch.zeros_like(p, dtype=_control_dtype(p)) for name, p in params.items()}
        self.c_global = zeros
        self.c_local = {name: z.clone() for name, z in zeros.items()}
        self.c_delta_para = None
        self.cnt = 0

    def load_global_controls(self, weights: Mapping[str, Any] | None) -> None:
        """Set ``c`` from the server's ``name -> array/tensor`` (None or empty: zeros).

        Names that are not controlled parameters (e.g. buffers) are ignored; a controlled
        parameter missing from a non-empty ``weights``, or of another shape, is an error.
        """
        current = self._controls()[0]
        if not weights:
            self.c_global = {k: torch.zeros_like(v) for k, v in current.items()}
            return
        new: Controls = {}
        for name, ref in current.items():
            if name not in weights:
                raise ValueError(
                    f"the global control variates lack parameter {name!r} (they hold "
                    f"{len(weights)} entries); does the server's model match this one?"
                )
            value = to_tensor(weights[name])
            if tuple(value.shape) != tuple(ref.shape):
                raise ValueError(
                    f"global control variate {name!r} has shape {tuple(value.shape)}, the "
                    f"parameter has {tuple(ref.shape)}"
                )
            new[name] = value.to(device=ref.device, dtype=ref.dtype, copy=True)
        self.c_global = new

    def get_params(self) -> tuple[Controls, Controls]:
        """``(c, c_i)`` for this round's :meth:`model_update` calls; restarts the step count."""
        self.cnt = 0
        return self._controls()

    def model_update(
        self, model: nn.Module, curr_lr: float, c_global_para: Controls, c_local_para: Controls
    ) -> None:
        """After an optimizer step: ``y -= curr_lr * (c - c_i)`` for every controlled
        parameter; counts the step."""
        params = _float_params(model)
        with torch.no_grad():
            for name, c_local in c_local_para.items():
                p = _param(params, name)
                correction = (c_local - c_global_para[name]).to(device=p.device, dtype=p.dtype)
                p.add_(correction, alpha=float(curr_lr))
        self.cnt += 1

    def terms_update(
        self,
        model: nn.Module,
        curr_lr: float,
        c_global_para: Controls,
        c_local_para: Controls,
        model_global: nn.Module | Mapping[str, Any],
    ) -> None:
        """After the round's training: ``c_i+ = c_i - c + (x - y) / (K * curr_lr)`` with ``x``
        the global params the round started from (``model_global``: a module or a mapping of
        name -> tensor/array) and ``K`` the :meth:`model_update` calls; keeps ``c_i+`` and
        the delta ``c_i+ - c_i`` (numpy, :meth:`get_delta_controls`)."""
        if self.cnt <= 0:
            raise ValueError(
                "terms_update needs at least one model_update call this round (K = 0 steps)"
            )
        if not curr_lr > 0:
            raise ValueError(f"curr_lr must be > 0, got {curr_lr!r}")
        params = _float_params(model)
        if isinstance(model_global, nn.Module):
            global_params: Mapping[str, Any] = model_global.state_dict()
        else:
            global_params = model_global
        scale = 1.0 / (self.cnt * float(curr_lr))
        new_local: Controls = {}
        delta: dict[str, np.ndarray[Any, Any]] = {}
        with torch.no_grad():
            for name, c_local in c_local_para.items():
                if name not in global_params:
                    raise ValueError(f"model_global lacks parameter {name!r}")
                y = _param(params, name).to(device=c_local.device, dtype=c_local.dtype)
                x = to_tensor(global_params[name]).to(device=c_local.device, dtype=c_local.dtype)
                c_new = c_local - c_global_para[name] + (x - y) * scale
                new_local[name] = c_new
                delta[name] = (c_new - c_local).cpu().numpy()
        self.c_local = new_local
        self.c_delta_para = delta

    def get_delta_controls(self) -> dict[str, np.ndarray[Any, Any]]:
        """``c_i+ - c_i`` of the last :meth:`terms_update`, as numpy arrays."""
        if self.c_delta_para is None:
            raise ValueError("c_delta_para has not been computed yet (call terms_update)")
        return self.c_delta_para

    # -- Ember conveniences ---------------------------------------------------------------
    def start_round(
        self, model: nn.Module, meta: Mapping[str, Any] | None = None
    ) -> tuple[Controls, Controls]:
        """Begin a round on ``model`` just loaded with the global params: init on first use,
        load ``c`` from ``meta["scaffold_c_global"]``, remember ``x`` and return ``(c, c_i)``."""
        if self.c_local is None:
            self.init(model)
        self.load_global_controls((meta or {}).get(SCAFFOLD_C_GLOBAL))
        self._global_params = {name: p.detach().clone() for name, p in _float_params(model).items()}
        self._round = self.get_params()
        return self._round

    def step(self, model: nn.Module, curr_lr: float) -> None:
        """:meth:`model_update` with this round's ``(c, c_i)``; call after each optimizer step."""
        c_global, c_local = self._started()
        self.model_update(model, curr_lr, c_global, c_local)

    def end_round(self, model: nn.Module, curr_lr: float) -> dict[str, Any]:
        """:meth:`terms_update` against the round's starting params; returns the meta to send:
        ``{"scaffold_c_diff": {name: array}}``."""
        c_global, c_local = self._started()
        assert self._global_params is not None
        self.terms_update(model, curr_lr, c_global, c_local, self._global_params)
        self._round = self._global_params = None
        return {SCAFFOLD_C_DIFF: self.get_delta_controls()}

    def _controls(self) -> tuple[Controls, Controls]:
        if self.c_global is None or self.c_local is None:
            raise ValueError("call init(model) (or start_round) first")
        return self.c_global, self.c_local

    def _started(self) -> tuple[Controls, Controls]:
        if self._round is None:
            raise ValueError("call start_round(model, input_model.meta) first")
        return self._round


def _float_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.is_floating_point()}


def _param(params: Mapping[str, nn.Parameter], name: str) -> nn.Parameter:
    if name not in params:
        raise ValueError(f"the model has no floating-point parameter {name!r}")
    return params[name]


def _control_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.promote_types(p.dtype, torch.float32)
