"""EdgeFedBuffRecipe with real-device gateways in SimEnv, driven by the HTTP-mode simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from edge_digits import DigitsDevice, accuracy, digits, initial_model

from ember import SimEnv
from ember_edge.gateway import HmacDeviceTokens
from ember_edge.http_devices import HttpDeviceSimulator
from ember_edge.recipes import (
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    GatewayConfig,
    ModelManagerConfig,
)
from ember_edge.simulator import DeviceTask
from support.sim import round_records

COMPLETED = "FINISHED:COMPLETED"
SECRET = "sim-secret"


def _recipe(**kwargs: Any) -> EdgeFedBuffRecipe:
    options: dict[str, Any] = {
        "name": "edge-http",
        "model": initial_model(),
        "min_clients": 2,
        "model_manager_config": ModelManagerConfig(num_updates_for_model=20, max_model_version=3),
        "device_manager_config": DeviceManagerConfig(device_selection_size=40),
        "gateway_config": GatewayConfig(
            authenticator="ember_edge.gateway:HmacDeviceTokens",
            authenticator_args={"secret": SECRET},
        ),
        "evaluator_config": EvaluatorConfig(accuracy),
        "report_interval": 0.05,
    }
    options.update(kwargs)
    recipe = EdgeFedBuffRecipe(**options)
    # a job that stops making versions fails in a minute, not edge.progress_timeout's ten
    recipe.set_config("edge.report_timeout", 10.0)
    recipe.set_config("edge.progress_timeout", 60.0)
    return recipe


def _run(
    recipe: EdgeFedBuffRecipe, tmp_path: Path, devices: HttpDeviceSimulator
) -> tuple[Path, dict[str, Any], dict[str, int]]:
    devices.start()
    try:
        run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    finally:
        devices.stop()
        stats = devices.join(30.0)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    return result, summary, stats


def _devices(tmp_path: Path, **kwargs: Any) -> HttpDeviceSimulator:
    digits()  # loaded (scikit-learn imported) before the devices' short deadlines run
    tokens = HmacDeviceTokens(SECRET)
    options: dict[str, Any] = {
        "factory": DigitsDevice,
        "num_devices": 300,
        "speed": {"distribution": "uniform", "low": 0.0, "high": 0.02},
        "seed": 3,
        "token": tokens.token_for,
        "wait": 2.0,
        "expect_gateways": 2,
    }
    options.update(kwargs)
    return HttpDeviceSimulator(tmp_path, **options)


def test_two_gateway_sites_and_300_http_devices_make_new_model_versions_and_end(
    tmp_path: Path,
) -> None:
    devices = _devices(tmp_path)
    result, summary, stats = _run(_recipe(), tmp_path, devices)
    records = round_records(result)
    assert [r["round"] for r in records] == [1, 2, 3]
    assert records[-1]["metrics"]["accuracy"] > accuracy(initial_model())["accuracy"]
    assert summary["model_versions"] == 3
    assert summary["devices_known"] == 300  # registered over HTTP, announced report by report
    assert summary["accepted_updates"] >= 3 * 20
    assert stats["registered"] == 300
    assert stats["results_taken"] >= summary["accepted_updates"]
    assert sorted(devices.per_gateway) == ["site-1", "site-2"]  # rendezvous-hashed
    assert min(devices.per_gateway.values()) > 100
    for site in ("site-1", "site-2"):
        info = json.loads((result / site / "gateway.json").read_text())
        assert info["url"].startswith("http://127.0.0.1:")
        assert info["site"] == site


def test_sync_mode_over_http_equals_fedavgs_weighted_mean(tmp_path: Path) -> None:
    n = 40
    recipe = _recipe(
        model_manager_config=ModelManagerConfig(num_updates_for_model=n, max_model_version=1),
        device_manager_config=DeviceManagerConfig(device_selection_size=n, min_hole_to_fill=n),
    )
    devices = _devices(tmp_path, num_devices=n, safetensors=True, speed=None)
    result, summary, _ = _run(recipe, tmp_path, devices)
    assert summary["model_versions"] == 1
    assert summary["accepted_updates"] == n
    # FedAvg: every device trains on version 0; version 1 is the sample-weighted mean
    start = initial_model()
    total = 0.0
    mean = {k: np.zeros_like(v) for k, v in start.items()}
    for device_id in devices.device_ids:
        device = DigitsDevice()
        device.setup(device_id)
        out = device.process_task(DeviceTask(device_id, 0, start))
        for k in mean:
            mean[k] += out.weight * out.params[k]
        total += out.weight
    expected = {k: v / total for k, v in mean.items()}
    with np.load(result / "server" / "models" / "global_model.npz") as saved:
        for k, v in expected.items():
            np.testing.assert_allclose(saved[k], v, rtol=1e-12, atol=1e-14)


def test_a_device_without_a_valid_token_is_refused_and_never_counted(tmp_path: Path) -> None:
    tokens = HmacDeviceTokens(SECRET)
    # dev-0 .. dev-9 send a wrong token: the gateways answer 401 and never announce them
    devices = _devices(
        tmp_path,
        num_devices=100,
        token=lambda d: "forged" if int(d.rsplit("-", 1)[1]) < 10 else tokens.token_for(d),
    )
    recipe = _recipe(
        model_manager_config=ModelManagerConfig(num_updates_for_model=10, max_model_version=1),
        device_manager_config=DeviceManagerConfig(device_selection_size=20),
    )
    _, summary, stats = _run(recipe, tmp_path, devices)
    assert stats["refused"] == 10
    assert stats["registered"] == 90
    assert summary["devices_known"] == 90


def test_devices_vanishing_mid_task_over_http_do_not_hang_the_job(tmp_path: Path) -> None:
    recipe = _recipe(
        model_manager_config=ModelManagerConfig(num_updates_for_model=20, max_model_version=2),
        device_manager_config=DeviceManagerConfig(
            device_selection_size=20, min_hole_to_fill=20, device_wait_timeout=0.5
        ),
    )
    devices = _devices(tmp_path, num_devices=300, dropout=0.3, seed=5)
    _, summary, stats = _run(recipe, tmp_path, devices)
    assert summary["model_versions"] == 2
    assert stats["dropped_out"] > 0
    # a vanished device never comes back, yet stays known: each time FedBuff selects it
    # again its slot is freed after device_wait_timeout once more
    assert summary["timed_out_devices"] >= 1
    assert summary["accepted_updates"] >= 2 * 20
