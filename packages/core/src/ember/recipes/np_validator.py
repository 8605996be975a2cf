"""The built-in site script of ``NumpyCrossSiteEvalRecipe`` (used when no ``eval_script``).

Each ``validate`` task's model is scored as NVFlare's ``NPValidator`` does, without its
random epsilon, so the matrix is reproducible: all the model's arrays flattened into one
vector ``w``, ``accuracy = sum(w / max(w))`` (0.0 when ``max(w)`` is 0 or the model is
empty). The metric depends on the model only, not on the site: every row of the matrix is
the same; a script of your own (``eval_script``) scores on the site's data. Other tasks get
an empty answer (this script has no model of its own to submit, and trains nothing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import ember.client as flare
from ember.client import FLModel


def score(params: dict[str, Any]) -> dict[str, float]:
    """``{"accuracy": sum(w / max(w))}`` over all of ``params``' arrays, flattened."""
    arrays = [np.asarray(v, dtype=np.float64).ravel() for v in params.values()]
    weights = np.concatenate(arrays) if arrays else np.zeros(0)
    top = float(weights.max()) if weights.size else 0.0
    return {"accuracy": float(np.sum(weights / top)) if top != 0.0 else 0.0}


def main() -> None:
    flare.init()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if flare.is_evaluate():
            flare.send(FLModel(metrics=score(model.params or {})))
        else:
            flare.send(FLModel())


if __name__ == "__main__":
    main()
