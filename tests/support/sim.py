"""Helpers to run numpy FedAvg jobs in SimEnv from tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ember import SimEnv
from ember.client import NUMPY_KEY
from ember.recipes import NumpyFedAvgRecipe

SCRIPTS = Path(__file__).parent.parent / "core" / "fixtures" / "scripts"
INITIAL = np.arange(6, dtype=np.float32).reshape(2, 3)


def numpy_recipe(script: str = "np_client.py", **kwargs: Any) -> NumpyFedAvgRecipe:
    """A NumpyFedAvgRecipe on a test script; keyword arguments override the defaults."""
    options: dict[str, Any] = {
        "name": "test-job",
        "min_clients": 2,
        "num_rounds": 3,
        "model": INITIAL,
        "train_script": str(SCRIPTS / script),
    }
    options.update(kwargs)
    return NumpyFedAvgRecipe(**options)


def run_sim(recipe: NumpyFedAvgRecipe, tmp_path: Path, **env: Any) -> Any:
    """Execute in a SimEnv under ``tmp_path`` (two sites unless told otherwise)."""
    env.setdefault("num_clients", 2)
    return recipe.execute(SimEnv(workspace_root=str(tmp_path / "ws"), progress=False, **env))


def global_model(result: str | Path, name: str = "global_model") -> np.ndarray:
    with np.load(Path(result) / "server" / "models" / f"{name}.npz") as data:
        return data[NUMPY_KEY]


def round_records(result: str | Path) -> list[dict[str, Any]]:
    lines = (Path(result) / "server" / "round_metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]
