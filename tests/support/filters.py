"""Helpers for filter tests: a two-variable numpy job and the test filters module."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ember.recipes import NumpyFedAvgRecipe
from support.sim import SCRIPTS

FILTERS = SCRIPTS.parent / "filters"
MODEL = {
    "w": np.arange(3, dtype=np.float32),
    "private.stats": np.zeros(3, dtype=np.float32),
}


def wire_filters() -> ModuleType:
    """``tests/core/fixtures/filters/wire_filters.py`` as a top-level module (a recipe
    bundles a filter's module into the job when it is not installed)."""
    if str(FILTERS) not in sys.path:
        sys.path.insert(0, str(FILTERS))
    import wire_filters

    return wire_filters


def dict_recipe(**kwargs: Any) -> NumpyFedAvgRecipe:
    """FedAvg of :data:`MODEL` with a script that adds 1 to every variable."""
    options: dict[str, Any] = {
        "name": "filters",
        "min_clients": 2,
        "num_rounds": 2,
        "model": MODEL,
        "train_script": str(SCRIPTS / "dict_client.py"),
    }
    options.update(kwargs)
    return NumpyFedAvgRecipe(**options)


def arrivals(path: Path) -> list[dict[str, Any]]:
    """What ``RecordArrivals`` wrote: one entry per result that reached the server."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def saved_model(result: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(result) / "server" / "models" / "global_model.npz") as data:
        return {k: data[k] for k in data.files}
