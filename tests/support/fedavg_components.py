"""Server components the FedAvg parameter tests name: aggregators and a persistor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ember.client import NUMPY_KEY
from ember.controllers import FLModel, load_numpy_file, save_npz


class PickSite:
    """Each round's aggregate is one site's model (and metrics of its own)."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.picked: FLModel | None = None
        self.seen: list[tuple[str, float]] = []

    def add(self, site: str, model: FLModel, weight: float) -> None:
        self.seen.append((site, weight))
        assert all(isinstance(v, np.ndarray) for v in (model.params or {}).values())
        if site == self.site:
            self.picked = model

    def result(self) -> FLModel:
        assert self.picked is not None
        return FLModel(params=self.picked.params, metrics={"picked_sites": len(self.seen)})


class ElementwiseMax:
    """The elementwise max of the sites' models; no metrics of its own."""

    def __init__(self) -> None:
        self.max: dict[str, Any] = {}

    def add(self, site: str, model: FLModel, weight: float) -> None:
        for key, value in (model.params or {}).items():
            self.max[key] = np.maximum(self.max[key], value) if key in self.max else value

    def result(self) -> FLModel:
        return FLModel(params=self.max)


class NotAModel:
    def add(self, site: str, model: FLModel, weight: float) -> None:
        pass

    def result(self) -> Any:
        return {"x": 1}


class NoResult:
    def add(self, site: str, model: FLModel, weight: float) -> None:
        pass


class ConstantPersistor:
    """Starts from an array of ``value``s; saves and loads .npz."""

    extension = ".npz"

    def __init__(self, value: float, shape: list[int]) -> None:
        self.value, self.shape = value, shape

    def initial_params(self, job_dir: Path) -> dict[str, Any]:
        return {NUMPY_KEY: np.full(self.shape, self.value, dtype=np.float32)}

    def save(self, params: dict[str, Any], path: Path) -> None:
        save_npz(params, path)

    def load(self, path: Path) -> dict[str, Any]:
        return load_numpy_file(path)
