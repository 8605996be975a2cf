"""What a training script exchanges with the server: ``FLModel`` and its enums and keys."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

NUMPY_KEY = "numpy_key"
"""The params key under which a single-array numpy model travels."""


class ParamsType(enum.StrEnum):
    """Whether ``FLModel.params`` holds full weights or the difference to the global model."""

    FULL = "FULL"
    DIFF = "DIFF"


class TransferType(enum.StrEnum):
    """What a recipe asks its clients to send back (``params_transfer_type``)."""

    FULL = "FULL"
    DIFF = "DIFF"


class MetaKey:
    """Keys of ``FLModel.meta`` with a meaning to Ember."""

    NUM_STEPS_CURRENT_ROUND = "NUM_STEPS_CURRENT_ROUND"
    """Weight of this result in the average (for example, the number of samples trained on)."""
    # the same strings as NVFlare's FLMetaKey, so meta written with literals keeps working
    JOB_ID = "job_id"
    SITE_NAME = "site_name"
    CURRENT_ROUND = "current_round"
    TOTAL_ROUNDS = "total_rounds"
    START_ROUND = "start_round"
    SUBMIT_MODEL_NAME = "submit_model_name"
    MODEL_OWNER = "model_owner"


@dataclass
class FLModel:
    """Model parameters, metrics and metadata exchanged between server and training script."""

    params_type: ParamsType | None = None
    params: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    current_round: int | None = None
    total_rounds: int | None = None
    start_round: int = 0
    optimizer_params: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.params_type is not None and not isinstance(self.params_type, ParamsType):
            try:
                self.params_type = ParamsType(self.params_type)
            except ValueError:
                raise ValueError(
                    f"FLModel params_type must be one of {[t.value for t in ParamsType]}, "
                    f"got {self.params_type!r}"
                ) from None
        if self.meta is None:
            self.meta = {}
