"""Experiment-tracking writers for training scripts, with NVFlare's names and methods.

``SummaryWriter`` (TensorBoard's ``add_scalar``/``add_scalars``), ``MLflowWriter`` (mlflow's
``log_metric``, ``log_metrics``, ``log_param``, ``log_params``, ``set_tag``, ``set_tags``,
``log_text``) and ``WandBWriter`` (wandb's ``log``) send what they are given to the job's
trackers, whichever library those write with (``add_experiment_tracking``; docs/tracking.md):
streamed to the server for server-side tracking, written by the site for client-side
tracking. None of them imports a tracking library: a script that logs needs none installed.

Example::

    from ember.client.tracking import MLflowWriter

    writer = MLflowWriter()
    writer.log_params({"lr": 0.01, "epochs": 2})
    writer.log_metric("train_loss", loss, step=global_step)
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from ember.client import api

# the kinds a value may be logged as (NVFlare's AnalyticsDataType names too), by what each
# tracker writes: scalar, scalars (TensorBoard's add_scalars), metrics, param(s), tag(s), text
KINDS = {
    "scalar": "scalar",
    "metric": "scalar",
    "scalars": "scalars",
    "metrics": "metrics",
    "param": "param",
    "parameter": "param",
    "params": "params",
    "parameters": "params",
    "tag": "tag",
    "tags": "tags",
    "text": "text",
}
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param's value


class SummaryWriter:
    """A drop-in for ``torch.utils.tensorboard.SummaryWriter``'s scalar methods."""

    def add_scalar(
        self, tag: str, scalar: Any, global_step: int | None = None, **kwargs: Any
    ) -> None:
        _log("scalar", tag, scalar, global_step)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: Mapping[str, Any],
        global_step: int | None = None,
        **kwargs: Any,
    ) -> None:
        _log("scalars", main_tag, tag_scalar_dict, global_step)

    def flush(self) -> None:
        """Values are sent as they are logged; nothing to flush."""

    def close(self) -> None:
        """Nothing to release."""


TBWriter = SummaryWriter
"""NVFlare's older name for :class:`SummaryWriter`."""


class MLflowWriter:
    """A drop-in for the ``mlflow`` module's logging functions, in the current run."""

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        _log("metric", key, value, step)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        _log("metrics", "metrics", metrics, step)

    def log_param(self, key: str, value: Any) -> None:
        _log("param", key, value, None)

    def log_params(self, values: Mapping[str, Any]) -> None:
        _log("params", "params", values, None)

    def set_tag(self, key: str, tag: Any) -> None:
        _log("tag", key, tag, None)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        _log("tags", "tags", tags, None)

    def log_text(self, text: str, artifact_file_path: str) -> None:
        """``text`` kept with the run as the file ``artifact_file_path`` (e.g. ``notes/a.txt``)."""
        _log("text", artifact_file_path, text, None)


class WandBWriter:
    """A drop-in for ``wandb.log``, in the current run."""

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        _log("metrics", "metrics", metrics, step)


def _log(kind: str, tag: str, value: Any, step: int | None) -> None:
    kind, tag, value = check_record(kind, tag, value)
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise TypeError(f"{tag}: the step must be an int, got {step!r}")
    api.log(tag, value, kind, None if step is None else int(step))


def check_record(kind: Any, tag: Any, value: Any) -> tuple[str, str, Any]:
    """A logged value's canonical kind, key and value, or TypeError/ValueError saying why it
    cannot be tracked. The writers check what a script logs; the trackers check it again as
    it arrives (what a site sends is data, never trusted to be well formed)."""
    canonical = KINDS.get(str(getattr(kind, "value", kind)).lower())
    if canonical is None:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(sorted(KINDS))}")
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"the key of a logged value must be a non-empty string, got {tag!r}")
    if canonical == "scalar":
        return canonical, tag, number(tag, value)
    if canonical in ("scalars", "metrics", "params", "tags"):
        if not isinstance(value, Mapping) or not value:
            raise TypeError(f"{tag}: {canonical} must be a non-empty dict, got {value!r}")
        if not all(isinstance(k, str) and k for k in value):
            raise TypeError(f"{tag}: the keys of {canonical} must be non-empty strings")
        if canonical in ("scalars", "metrics"):
            return canonical, tag, {k: number(f"{tag}/{k}", v) for k, v in value.items()}
        return canonical, tag, {k: param(v) for k, v in value.items()}
    if canonical == "text":
        if not isinstance(value, str):
            raise TypeError(f"{tag}: the text must be a string, got {type(value).__name__}")
        path = PurePosixPath(tag)
        if path.is_absolute() or ".." in path.parts or "\\" in tag:
            raise ValueError(f"a text's artifact_file_path must stay in the run, got {tag!r}")
        return canonical, tag, value
    return canonical, tag, param(value)


def number(tag: str, value: Any) -> float:
    """``value`` as a float (a numpy or torch scalar too); TypeError naming ``tag`` if it is
    not a number."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{tag} must be a number, got {type(value).__name__}")
    return float(value)


def param(value: Any) -> str:
    """A param's or tag's value as the string trackers keep (JSON for non-strings)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_CHARS]


__all__ = ["MLflowWriter", "SummaryWriter", "TBWriter", "WandBWriter"]
