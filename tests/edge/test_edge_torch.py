"""EdgeFedBuffRecipe with a PyTorch model: TorchDeviceProcessor devices on digits in SimEnv."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ember_pt")

from edge_torch_digits import MLP, TorchDigitsDevice, accuracy, initial_model  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember.recipes import RecipeArgumentError  # noqa: E402
from ember_edge.recipes import (  # noqa: E402
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    ModelManagerConfig,
    SimulationConfig,
    edge_framework,
)
from ember_edge.simulator import DeviceTask  # noqa: E402
from ember_edge.torch_devices import load_params, module_params  # noqa: E402
from support.sim import round_records  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _recipe(**kwargs: Any) -> EdgeFedBuffRecipe:
    options: dict[str, Any] = {
        "name": "edge-torch",
        "model": initial_model(),
        "min_clients": 2,
        "model_manager_config": ModelManagerConfig(num_updates_for_model=20, max_model_version=6),
        "device_manager_config": DeviceManagerConfig(device_selection_size=40),
        "simulation_config": SimulationConfig(
            task_processor=TorchDigitsDevice,
            task_processor_args={"samples": 48, "lr": 0.3, "epochs": 5, "batch_size": 16},
            num_devices=100,
            seed=1,
        ),
        "evaluator_config": EvaluatorConfig(accuracy),
        "report_interval": 0.05,
    }
    options.update(kwargs)
    return EdgeFedBuffRecipe(**options)


def test_a_torch_mlp_trained_by_simulated_devices_reaches_accuracy_0_8_on_digits(
    tmp_path: Path,
) -> None:
    recipe = _recipe()
    assert recipe.job.meta["framework"] == "pytorch"
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    result = Path(run.get_result())
    records = round_records(result)
    scores = [r["metrics"]["accuracy"] for r in records]
    assert [r["round"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert accuracy(module_params(initial_model()))["accuracy"] < 0.2
    assert scores[-1] >= 0.8, scores
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["model_versions"] == 6
    # the global model is saved as ember-pt saves it, and loads into the module
    from safetensors.torch import load_file

    saved = result / "server" / "models" / "global_model.safetensors"
    model = MLP()
    model.load_state_dict(load_file(str(saved)))
    assert accuracy(module_params(model))["accuracy"] == pytest.approx(scores[-1])


def test_the_framework_is_told_from_the_model_or_given_and_checked() -> None:
    assert edge_framework(None, initial_model(), None) == "pytorch"
    assert edge_framework(None, None, "/abs/ckpt.safetensors") == "pytorch"
    assert edge_framework(None, {"w": np.zeros(3)}, None) == "numpy"
    spec = {"path": "edge_torch_digits.MLP", "args": {}}
    recipe = _recipe(model=spec, framework="pytorch")
    assert recipe.job.meta["framework"] == "pytorch"
    persistor = recipe.job.workflows[0]["args"]["persistor"]
    assert persistor["target"] == "ember_pt.persistor:TorchPersistor"
    assert persistor["args"]["factory"] == spec
    with pytest.raises(RecipeArgumentError, match="framework must be one of"):
        _recipe(framework="jax")
    with pytest.raises(RecipeArgumentError, match=r"model=\.\.\. or initial_ckpt"):
        _recipe(model=None)


def test_a_torch_device_answers_with_its_update_and_refuses_params_of_another_model() -> None:
    device = TorchDigitsDevice(samples=16, lr=0.5, epochs=2)
    device.setup("site-1/dev-3")
    params = module_params(initial_model())
    result = device.process_task(DeviceTask("site-1/dev-3", 0, params))
    assert result.params_type == "DIFF"
    assert result.weight == 16
    assert set(result.params) == set(params)
    assert any(np.abs(d).max() > 0 for d in result.params.values())
    assert result.metrics["loss"] > 0
    # the same task again gives the same update (seeded by device and version)
    again = device.process_task(DeviceTask("site-1/dev-3", 0, params))
    for key, value in result.params.items():
        np.testing.assert_allclose(again.params[key], value, atol=1e-6)
    with pytest.raises(KeyError, match=r"missing \['fc2.bias'\]"):
        load_params(MLP(), {k: v for k, v in params.items() if k != "fc2.bias"})
    device.shutdown()
    assert device.model is None
