"""Device gateways in PocEnv: real site processes, each gateway on HTTPS (the site has a
startup kit), HTTP-mode devices against them."""

from __future__ import annotations

import json
from pathlib import Path

from edge_digits import DigitsDevice, accuracy, digits, initial_model

from ember.envs.poc import PocEnv
from ember.system.poc import PocWorkspace
from ember_edge.http_devices import HttpDeviceSimulator
from ember_edge.recipes import (
    DeviceManagerConfig,
    EdgeFedBuffRecipe,
    EvaluatorConfig,
    GatewayConfig,
    ModelManagerConfig,
)
from support.sim import round_records

COMPLETED = "FINISHED:COMPLETED"


def test_http_devices_reach_the_poc_sites_gateways_over_https_and_the_job_ends(
    poc: PocWorkspace,
) -> None:
    recipe = EdgeFedBuffRecipe(
        name="edge-poc-http",
        model=initial_model(),
        min_clients=2,
        model_manager_config=ModelManagerConfig(num_updates_for_model=20, max_model_version=2),
        device_manager_config=DeviceManagerConfig(device_selection_size=40),
        gateway_config=GatewayConfig(),  # tls=None: HTTPS, PoC sites have startup kits
        evaluator_config=EvaluatorConfig(accuracy),
        report_interval=0.05,
    )
    digits()
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(recipe)
    devices = HttpDeviceSimulator(
        poc.root, DigitsDevice, 100, wait=2.0, expect_gateways=2, job_id=run.get_job_id()
    )
    devices.start()
    try:
        result = Path(run.get_result(timeout=240))
    finally:
        devices.stop()
        stats = devices.join(30.0)
    assert run.get_status() == COMPLETED, run.get_message()
    assert [r["round"] for r in round_records(result)] == [1, 2]
    assert stats["registered"] == 100
    # over HTTPS, each device checking the gateway's certificate (pinned from gateway.json)
    assert stats["results_taken"] >= 2 * 20
    # (devices between two requests when a site's process ends find its gateway gone: the
    # simulator counts those in request_errors)
    infos = sorted(poc.root.rglob("gateway.json"))
    assert len(infos) == 2
    for path in infos:
        info = json.loads(path.read_text())
        assert info["url"].startswith("https://127.0.0.1:")
        assert info["job_id"] == run.get_job_id()
        assert Path(info["cert"]).is_file()  # self-signed for the job: kits hold no gateway.crt
