"""Saved models: numeric params as ``.npz`` and the spec as ``.json`` beside it; no pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ember.controllers import save_npz

FORMAT = "ember-sklearn/1"


def spec_path(path: Path) -> Path:
    """The JSON file that goes with the ``.npz`` file ``path``."""
    return Path(path).with_suffix(".json")


def save_model(params: dict[str, Any], spec: dict[str, Any], path: Path) -> None:
    """Write ``path`` (.npz) and its spec (.json), each atomically."""
    path = Path(path)
    save_npz(params, path)
    target = spec_path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **spec}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, target)


def load_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a saved model: its arrays (``allow_pickle=False``) and its spec."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        params = {key: data[key] for key in data.files}
    spec = json.loads(spec_path(path).read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or spec.pop("format", None) != FORMAT:
        raise ValueError(f"{spec_path(path)} is not an {FORMAT} model spec")
    return params, spec
