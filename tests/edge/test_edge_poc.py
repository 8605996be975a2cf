"""EdgeFedBuffRecipe in PocEnv (real server and site processes, gRPC with mutual TLS): the
same job gives SimEnv's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from edge_digits import DigitsDevice, accuracy, initial_model

from ember import SimEnv
from ember.envs.poc import PocEnv
from ember.system.poc import PocWorkspace
from ember_edge.recipes import (
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    ModelManagerConfig,
    SimulationConfig,
)
from support.sim import round_records

COMPLETED = "FINISHED:COMPLETED"
DEVICES = 20  # per aggregator site


def recipe() -> EdgeFedBuffRecipe:
    every = 2 * DEVICES  # sync mode over every device: the versions do not depend on timing
    return EdgeFedBuffRecipe(
        name="edge-poc",
        model=initial_model(),
        min_clients=2,
        model_manager_config=ModelManagerConfig(num_updates_for_model=every, max_model_version=3),
        device_manager_config=DeviceManagerConfig(
            device_selection_size=every, min_hole_to_fill=every
        ),
        simulation_config=SimulationConfig(task_processor=DigitsDevice, num_devices=DEVICES),
        evaluator_config=EvaluatorConfig(accuracy),
        report_interval=0.05,
    )


def _model(result: Path) -> dict[str, np.ndarray]:
    with np.load(result / "server" / "models" / "global_model.npz") as data:
        return {k: data[k] for k in data.files}


def test_an_edge_job_gives_the_same_model_in_pocenv_as_in_simenv(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    sim = recipe().execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert sim.get_status() == COMPLETED, sim.get_message()
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(recipe())
    result = Path(run.get_result(timeout=240))
    assert run.get_status() == COMPLETED, run.get_message()
    expected, got = _model(Path(sim.get_result())), _model(result)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    records = round_records(result)
    assert [r["round"] for r in records] == [1, 2, 3]
    assert records[-1]["metrics"]["accuracy"] == round_records(sim.get_result())[-1]["metrics"][
        "accuracy"
    ]


def test_pocenv_gateways_serve_https_with_the_kits_certificate_and_devices_verify_it(
    poc: PocWorkspace, tmp_path: Path
) -> None:
    import json

    from edge_digits import digits

    from ember_edge.http_devices import HttpDeviceSimulator
    from ember_edge.recipes import GatewayConfig

    n = 40
    recipe = EdgeFedBuffRecipe(
        name="edge-poc-https",
        model=initial_model(),
        min_clients=2,
        model_manager_config=ModelManagerConfig(num_updates_for_model=n, max_model_version=1),
        device_manager_config=DeviceManagerConfig(device_selection_size=n, min_hole_to_fill=n),
        gateway_config=GatewayConfig(),  # tls=None: HTTPS where the site has a kit
        report_interval=0.05,
    )
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(recipe)
    digits()
    devices = HttpDeviceSimulator(
        poc.root, factory=DigitsDevice, num_devices=n, expect_gateways=2, job_id=run.get_job_id()
    )
    devices.start()
    try:
        run.get_result(timeout=240)
    finally:
        devices.stop()
        stats = devices.join(30.0)
    assert run.get_status() == COMPLETED, run.get_message()
    assert stats["results_taken"] == n
    # the certificate verified (a long poll cut by the gateway's end is no TLS failure)
    assert not [e for e in devices.errors if "SSL" in e or "Certificate" in e], devices.errors
    for kit in poc.clients:
        folder = kit.folder / "jobs" / run.get_job_id() / "workspace"
        info = json.loads((folder / "gateway.json").read_text())
        assert info["url"].startswith("https://")
        assert info["cert"] == str(kit.startup / "gateway.crt")  # provisioned, not made
        assert info["ca"] == str(kit.startup / "rootCA.pem")
