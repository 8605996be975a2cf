"""ETFedBuffRecipe: every model version exported once to a training .pte, devices train it
with ExecuTorch's training runtime (the ember-edge[et] extra)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ember_pt")

from edge_torch_digits import MLP, accuracy, device_data, initial_model  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember.recipes import RecipeArgumentError  # noqa: E402
from ember_edge.executorch import DeviceModel  # noqa: E402
from ember_edge.recipes import ETFedBuffRecipe  # noqa: E402
from ember_edge.torch_devices import module_params  # noqa: E402
from support.sim import round_records  # noqa: E402

needs_et = pytest.mark.skipif(
    importlib.util.find_spec("executorch") is None,
    reason="ExecuTorch is not installed (pip install 'ember-edge[et]')",
)
BATCH = 16


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _recipe(**kwargs: Any) -> ETFedBuffRecipe:
    from edge_et_digits import et_recipe

    return et_recipe(**kwargs)


@needs_et
def test_et_devices_train_each_version_from_a_pte_exported_once_and_accuracy_rises(
    tmp_path: Path,
) -> None:
    from ember_edge.executorch import forget_exports

    forget_exports()  # an earlier job in this process may have exported the same versions
    run = _recipe().execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    result = Path(run.get_result())
    records = round_records(result)
    assert [r["round"] for r in records] == [1, 2, 3]
    scores = [r["metrics"]["accuracy"] for r in records]
    start = accuracy(module_params(initial_model()))["accuracy"]
    assert start < 0.2
    assert scores[-1] >= 0.8, scores
    assert scores[-1] > scores[0]
    # versions 0, 1 and 2 went to devices at both sites: each exported once in the process
    # (the other site took that export), none twice at a site
    stats = records[-1]["site_metrics"]
    assert sum(s["pte_exports"] for s in stats.values()) == 3, stats
    for site in stats.values():
        assert site["pte_exports"] + site["pte_shared"] == 3, stats
    assert max(s["pte_bytes"] for s in stats.values()) > 1000
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["model_versions"] == 3
    assert (result / "server" / "models" / "global_model.safetensors").is_file()


@needs_et
def test_an_et_device_update_matches_torch_sgd_on_the_same_batches() -> None:
    from edge_et_digits import ETDigitsDevice

    from ember_edge.executorch import export_pte
    from ember_edge.simulator import DeviceTask

    net = initial_model()
    pte = export_pte(DeviceModel(net), (BATCH, 64), (BATCH,))
    device = ETDigitsDevice(
        samples=32, training_config={"batch_size": BATCH, "lr": 0.1, "shuffle": False}
    )
    device.setup("s/dev-1")
    params = module_params(net)
    result = device.process_task(DeviceTask("s/dev-1", 0, params, pte))
    assert result.params_type == "DIFF"
    assert set(result.params) == set(params)  # "net." dropped
    assert result.weight == 32
    # the same two steps in eager torch
    x, y = device_data("s/dev-1", 32)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for b in range(2):
        optimizer.zero_grad()
        batch = slice(b * BATCH, (b + 1) * BATCH)
        torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        optimizer.step()
    for key, value in module_params(net).items():
        np.testing.assert_allclose(result.params[key], value - params[key], atol=1e-5)


def test_without_executorch_the_recipe_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name.startswith("executorch") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(RecipeArgumentError, match=r"pip install 'ember-edge\[et\]'"):
        _recipe()
    from ember_edge.executorch import ExecuTorchMissingError, require_executorch

    with pytest.raises(ExecuTorchMissingError, match=r"ember-edge\[et\]"):
        require_executorch("a simulated ExecuTorch device")


@needs_et
def test_the_recipe_refuses_bad_shapes_models_and_batch_sizes_by_name() -> None:
    with pytest.raises(RecipeArgumentError, match="same batch size"):
        _recipe(output_shape=(8,))
    with pytest.raises(RecipeArgumentError, match="batch_size=8 must be"):
        _recipe(device_training_params={"batch_size": 8})
    with pytest.raises(RecipeArgumentError, match="device_model must be a DeviceModel"):
        _recipe(device_model=MLP())
    with pytest.raises(RecipeArgumentError, match="must be a SimulationConfig"):
        _recipe(simulation_config="devices")
    with pytest.raises(RecipeArgumentError, match="sets model itself"):
        _recipe(model=MLP())
    recipe = _recipe(device_model={"path": "edge_torch_digits.MLP", "args": {}})
    encoder = recipe.job.client.site_workflow["args"]["encoder"]
    assert encoder["args"]["net"] == {"path": "edge_torch_digits.MLP", "args": {}}
    training = recipe.job.client.site_workflow["args"]["processor_args"]["training_config"]
    assert training == {"epoch": 5, "lr": 0.3, "batch_size": BATCH}


@needs_et
def test_http_devices_get_each_versions_pte_and_its_training_config_from_the_gateway(
    tmp_path: Path,
) -> None:
    from edge_et_digits import ETDigitsDevice

    from ember_edge.executorch import forget_exports
    from ember_edge.http_devices import HttpDeviceSimulator
    from ember_edge.recipes import GatewayConfig

    forget_exports()
    recipe = _recipe(simulation_config=None, gateway_config=GatewayConfig())
    gateway = recipe.job.client.site_workflow["args"]["gateway"]
    assert gateway["training_config"] == {"epoch": 5, "lr": 0.3, "batch_size": BATCH}
    devices = HttpDeviceSimulator(
        tmp_path,
        factory=ETDigitsDevice,
        factory_args={"samples": 64, "training_config": gateway["training_config"]},
        num_devices=60,
        expect_gateways=2,
    )
    devices.start()
    try:
        run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    finally:
        devices.stop()
        stats = devices.join(60.0)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    records = round_records(run.get_result())
    assert [r["round"] for r in records] == [1, 2, 3]
    assert records[-1]["metrics"]["accuracy"] >= 0.7, records
    assert stats["results_taken"] >= 30
    exported = sum(s["pte_exports"] + s["pte_shared"] for s in records[-1]["site_metrics"].values())
    assert exported >= 3  # the devices trained .pte programs, one per version and site

