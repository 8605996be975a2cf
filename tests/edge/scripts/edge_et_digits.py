"""ExecuTorch devices for the ember-edge tests: edge_torch_digits' MLP trained from a .pte."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from edge_torch_digits import accuracy, device_data, initial_model

from ember_edge.executorch import DeviceModel, ETDeviceProcessor
from ember_edge.recipes import (
    DeviceManagerConfig,
    ETFedBuffRecipe,
    EvaluatorConfig,
    ModelManagerConfig,
    SimulationConfig,
)

BATCH = 16


class ETDigitsDevice(ETDeviceProcessor):
    """One ExecuTorch device holding ``samples`` digits."""

    def __init__(
        self, samples: int = 48, training_config: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(training_config)
        self.samples = samples

    def load_data(self, device_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        return device_data(device_id, self.samples)


def et_recipe(**kwargs: Any) -> ETFedBuffRecipe:
    """The tests' ETFedBuffRecipe: 2 sites x 30 devices, sync mode, 3 versions."""
    options: dict[str, Any] = {
        "name": "edge-et",
        "device_model": DeviceModel(initial_model()),
        "input_shape": (BATCH, 64),
        "output_shape": (BATCH,),
        "min_clients": 2,
        # sync mode: every version is given to devices, so each is exported
        "model_manager_config": ModelManagerConfig(num_updates_for_model=10, max_model_version=3),
        "device_manager_config": DeviceManagerConfig(
            device_selection_size=10, min_hole_to_fill=10
        ),
        "simulation_config": SimulationConfig(
            task_processor=ETDigitsDevice,
            task_processor_args={"samples": 64},
            num_devices=30,
            seed=2,
        ),
        "device_training_params": {"epoch": 5, "lr": 0.3},
        "evaluator_config": EvaluatorConfig(accuracy),
        "report_interval": 0.05,
    }
    options.update(kwargs)
    return ETFedBuffRecipe(**options)
