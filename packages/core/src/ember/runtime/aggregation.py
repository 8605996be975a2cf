"""Weighted averaging that consumes one result at a time (a running weighted sum)."""

from __future__ import annotations

import numbers
import re
from typing import Any

import numpy as np

from ember.common.model import ParamsType
from ember.runtime.errors import JobError
from ember.streaming.lazy import DeferredTensor, release_all


class WeightedAverage:
    """Running weighted sums of params and numeric metrics; memory does not grow with sites.

    Values are accumulated in their own dtype, in the order results are added (the task
    board adds them in site order, so the result does not depend on arrival order).
    """

    def __init__(self, exclude_vars: str | None = None) -> None:
        self.exclude = re.compile(exclude_vars) if exclude_vars else None
        self.params_type: ParamsType | None = None
        self._sums: dict[str, Any] = {}
        self._weights: dict[str, float] = {}
        self._metric_sums: dict[str, float] = {}
        self._metric_weights: dict[str, float] = {}
        self._scratch: dict[tuple[tuple[int, ...], str], np.ndarray[Any, Any]] = {}
        self.count = 0

    def add(
        self,
        site: str,
        params: dict[str, Any] | None,
        params_type: ParamsType | None,
        weight: float,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Add one site's result with its weight."""
        if params:
            if self.params_type is None:
                self.params_type = params_type or ParamsType.FULL
            elif (params_type or ParamsType.FULL) != self.params_type:
                raise JobError(
                    f"{site} sent {params_type} params while other sites sent "
                    f"{self.params_type}; all sites must send the same params type"
                )
            for key, value in params.items():
                if self.exclude is not None and self.exclude.search(key):
                    continue
                owned = False
                if isinstance(value, DeferredTensor):
                    # pulled now, one tensor at a time; read-only is enough to add it
                    value, owned = value.take()
                total = self._sums.get(key)
                if isinstance(total, np.ndarray) and _accumulates(total, value):
                    self._accumulate(total, value, weight)
                    self._weights[key] += weight
                    continue
                if owned and key not in self._sums and _floating(value):
                    # a pulled tensor nobody else sees becomes the sum: no new array
                    w = value.dtype.type(weight)
                    if w != 1:
                        np.multiply(value, w, out=value)
                    self._sums[key] = value
                    self._weights[key] = weight
                    continue
                weighted = _scale(value, weight, site, key)
                if key in self._sums:
                    self._sums[key] = _add_into(self._sums[key], weighted)
                    self._weights[key] += weight
                else:
                    self._sums[key] = weighted
                    self._weights[key] = weight
        release_all(params)  # what was not pulled (excluded keys) is released at its owner
        for name, value in (metrics or {}).items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._metric_sums[name] = self._metric_sums.get(name, 0.0) + float(value) * weight
                self._metric_weights[name] = self._metric_weights.get(name, 0.0) + weight
        self.count += 1

    def _accumulate(
        self, total: np.ndarray[Any, Any], value: np.ndarray[Any, Any], weight: float
    ) -> None:
        """``total += value * weight`` without a fresh temporary per tensor."""
        w = total.dtype.type(weight)
        if w == 1:
            total += value
            return
        scratch = self._scratch.get((value.shape, value.dtype.str))
        if scratch is None:
            scratch = self._scratch[(value.shape, value.dtype.str)] = np.empty_like(value)
        np.multiply(value, w, out=scratch)
        total += scratch

    def params(self) -> dict[str, Any]:
        """The weighted mean of every aggregated key."""
        out = {}
        for key, total in self._sums.items():
            w = self._weights[key]
            if isinstance(total, np.ndarray) and np.issubdtype(total.dtype, np.floating):
                if w:
                    total /= total.dtype.type(w)  # in place: the sum becomes the mean
                out[key] = total
            else:
                out[key] = total / w if w else total
        return out

    def metrics(self) -> dict[str, float]:
        """The weighted mean of every numeric metric the sites reported."""
        return {
            k: v / self._metric_weights[k]
            for k, v in self._metric_sums.items()
            if self._metric_weights[k]
        }


def _scale(value: Any, weight: float, site: str, key: str) -> Any:
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.integer):
            if np.issubdtype(value.dtype, np.integer):
                return value.astype(np.float64) * weight
            raise JobError(
                f"{site}: params[{key!r}] has dtype {value.dtype}, which cannot be averaged"
            )
        return value * value.dtype.type(weight)
    if isinstance(value, numbers.Complex) and not isinstance(value, bool):
        return value * weight
    raise JobError(
        f"{site}: params[{key!r}] is a {type(value).__name__}; FedAvg averages numpy arrays "
        "and numbers (exclude it with exclude_vars)"
    )


def _floating(value: Any) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


def _accumulates(total: np.ndarray[Any, Any], value: Any) -> bool:
    """Whether ``value`` can be added into ``total`` in place, in ``total``'s own dtype."""
    return (
        isinstance(value, np.ndarray)
        and total.flags.writeable
        and value.dtype == total.dtype
        and value.shape == total.shape
        and np.issubdtype(total.dtype, np.floating)
    )


def _add_into(total: Any, value: Any) -> Any:
    if isinstance(total, np.ndarray):
        if total.shape != np.shape(value):
            raise JobError(
                f"params shapes differ between sites: {total.shape} vs {np.shape(value)}"
            )
        if total.flags.writeable:
            total += value
            return total
        return total + value
    return total + value


def apply_update(
    global_params: dict[str, Any], aggregated: dict[str, Any], params_type: ParamsType | None
) -> dict[str, Any]:
    """The new global model: aggregated FULL params replace, DIFF params are added."""
    new = dict(global_params)
    for key, value in aggregated.items():
        if params_type == ParamsType.DIFF:
            if key not in global_params:
                raise JobError(f"a DIFF update names {key!r}, which the global model lacks")
            base = global_params[key]
            new[key] = (
                (base + value).astype(base.dtype) if isinstance(base, np.ndarray) else base + value
            )
        else:
            new[key] = value
    return new
