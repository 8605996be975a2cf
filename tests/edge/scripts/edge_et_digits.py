"""ExecuTorch devices for the ember-edge tests: edge_torch_digits' MLP trained from a .pte."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from edge_torch_digits import device_data

from ember_edge.executorch import ETDeviceProcessor


class ETDigitsDevice(ETDeviceProcessor):
    """One ExecuTorch device holding ``samples`` digits."""

    def __init__(
        self, samples: int = 48, training_config: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(training_config)
        self.samples = samples

    def load_data(self, device_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        return device_data(device_id, self.samples)
