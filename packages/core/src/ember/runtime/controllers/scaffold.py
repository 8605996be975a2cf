"""SCAFFOLD's server: FedAvg's global step plus the global control variates ``c``.

Each round's train tasks carry ``meta["scaffold_c_global"]`` (name -> numpy array; zeros in
round 0), each result must carry ``meta["scaffold_c_diff"]`` (``c_i+ - c_i``), and after the
round ``c += sum(c_diff over the sites that answered) / N`` with ``N`` the number of sites in
the job (Karimireddy et al. 2020, eq. 5: a site that did not answer contributes zero).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ember.common.model import FLModel
from ember.runtime.context import ServerContext
from ember.runtime.controllers.fedavg import FedAvgController
from ember.runtime.errors import JobError
from ember.streaming.lazy import DeferredTensor, release_all

#: task meta key of the global control variates (the framework packages' client helpers,
#: ``ember_pt.scaffold`` and ``ember_tf.scaffold``, use the same strings)
SCAFFOLD_C_GLOBAL = "scaffold_c_global"
#: result meta key of a site's control-variate change
SCAFFOLD_C_DIFF = "scaffold_c_diff"
#: the latest global control variates, under the server's folder
C_GLOBAL_FILE = "models/scaffold_c_global.safetensors"

Arrays = dict[str, np.ndarray[Any, Any]]


class ScaffoldController(FedAvgController):
    """FedAvg (server learning rate 1) with SCAFFOLD's global control variates.

    ``c`` exists for every floating-point entry of the initial model (float32, or float64
    for float64 entries); a site may leave out entries (e.g. buffers), which count as zero.
    ``c`` is saved after every round as ``server/models/scaffold_c_global.safetensors`` and
    left in ``ctx.state["scaffold_c_global"]``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.c_global: Arrays | None = None
        self._c_sum: Arrays = {}
        self._num_sites = 0
        self._ctx: ServerContext | None = None

    def checkpoint_state(self) -> dict[str, Any]:
        """FedAvg's state and the server's control variates ``c``."""
        return {**super().checkpoint_state(), SCAFFOLD_C_GLOBAL: dict(self.c_global or {})}

    def restore_state(self, state: dict[str, Any]) -> None:
        super().restore_state(state)
        self.c_global = {k: np.asarray(v) for k, v in state[SCAFFOLD_C_GLOBAL].items()}

    def run(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._num_sites = len(ctx.board.sites)
        persistor = self.persistor
        load_initial = persistor.initial_params

        def initial_params(job_dir: Any) -> dict[str, Any]:
            # FedAvg loads the initial model once, at the start of run: take c's shapes from it
            params: dict[str, Any] = load_initial(job_dir)
            self.c_global = zero_controls(params)
            return params

        # shadows the method on this instance for the run (mypy refuses `x.method = ...`)
        setattr(persistor, "initial_params", initial_params)  # noqa: B010
        try:
            super().run(ctx)
        finally:
            del persistor.initial_params  # the class's method again
        ctx.state[SCAFFOLD_C_GLOBAL] = self.c_global

    def round_task_meta(self, rnd: int) -> dict[str, Any]:
        """FedAvg's meta plus ``scaffold_c_global``."""
        if self.c_global is None:
            raise JobError("SCAFFOLD's control variates were not initialized from the model")
        return {**super().round_task_meta(rnd), SCAFFOLD_C_GLOBAL: dict(self.c_global)}

    def result_received(self, site: str, model: FLModel, weight: float) -> None:
        """Add the site's ``scaffold_c_diff`` to the round's sum (pulling streamed arrays)."""
        assert self.c_global is not None
        diff = (model.meta or {}).get(SCAFFOLD_C_DIFF)
        if not isinstance(diff, Mapping):
            got = "nothing" if diff is None else f"a {type(diff).__name__}"
            raise JobError(
                f"{site} sent {got} as meta[{SCAFFOLD_C_DIFF!r}]; a SCAFFOLD training script "
                f"must send its control-variate change c_i+ - c_i as FLModel(meta="
                f"{{{SCAFFOLD_C_DIFF!r}: {{name: array}}}}) (the framework's SCAFFOLD helper, "
                "e.g. ember_pt.scaffold.PTScaffoldHelper.end_round, returns that meta)"
            )
        try:
            for key, value in diff.items():
                ref = self.c_global.get(key)
                if ref is None:
                    raise JobError(
                        f"{site}: {SCAFFOLD_C_DIFF}[{key!r}] names no floating-point entry of "
                        "the global model"
                    )
                array = _as_array(value)
                if array.shape != ref.shape or not _is_real(array):
                    raise JobError(
                        f"{site}: {SCAFFOLD_C_DIFF}[{key!r}] is {array.dtype}{list(array.shape)}, "
                        f"expected real numbers of shape {list(ref.shape)}"
                    )
                total = self._c_sum.get(key)
                if total is None:
                    self._c_sum[key] = array.astype(ref.dtype, copy=True)
                else:
                    np.add(total, array, out=total, casting="same_kind")
        except BaseException:
            release_all(dict(diff))  # what was not pulled
            raise

    def round_finished(self, rnd: int, responded: list[str]) -> None:
        """``c += sum(c_diff) / N`` (N: the job's sites); saves ``c``."""
        assert self.c_global is not None
        assert self._ctx is not None
        n = max(self._num_sites, 1)
        updated: Arrays = {}
        for key, c in self.c_global.items():
            total = self._c_sum.get(key)
            if total is None:
                updated[key] = c
                continue
            total /= total.dtype.type(n)
            # a new array: slow sites may still be reading the old one (streamed from memory)
            new = c + total
            new.flags.writeable = False
            updated[key] = new
        self.c_global = updated
        self._c_sum = {}
        _save_safetensors(updated, self._ctx.server_dir / C_GLOBAL_FILE)


def _save_safetensors(arrays: Arrays, path: Path) -> None:
    """Write ``arrays`` as a safetensors file, atomically."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    os.replace(tmp, path)


def zero_controls(params: Mapping[str, Any]) -> Arrays:
    """Read-only zeros for every floating-point entry of ``params`` (at least float32)."""
    out: Arrays = {}
    for key, value in params.items():
        dtype = getattr(value, "dtype", None)
        if isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating):
            zeros = np.zeros(np.shape(value), dtype=np.result_type(dtype, np.float32))
            zeros.flags.writeable = False
            out[key] = zeros
    if not out:
        raise JobError("the initial model has no floating-point entries for SCAFFOLD to control")
    return out


def _as_array(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, DeferredTensor):
        return value.fetch(keep=False, writable=False)  # pulled now, read-only suffices
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(value)  # a framework's CPU tensor converts through __array__


def _is_real(array: np.ndarray[Any, Any]) -> bool:
    return bool(np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
