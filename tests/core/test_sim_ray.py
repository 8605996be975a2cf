"""SimEnv(backend="ray"): sites in Ray actors on a 3-node Ray cluster on this machine, the same
bits as the thread backend, a killed actor as a dead site, abort, and the extra missing."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ember import SimEnv
from ember.errors import MissingDependencyError, RecipeArgumentError
from ember.runtime.ray_backend import check_site_resources, gpu_memory_fraction, pool_size
from support.sim import INITIAL, global_model, numpy_recipe, round_records

ray = pytest.importorskip("ray")

COMPLETED = "FINISHED:COMPLETED"

SCRIPT = '''
import argparse, sys, time
from pathlib import Path
import numpy as np
import ember.client as flare
from ember.client import NUMPY_KEY, FLModel, ParamsType

parser = argparse.ArgumentParser()
parser.add_argument("--nodes", default="")
parser.add_argument("--block", default="", help="SITE:ROUND:DIR")
args = parser.parse_args()
flare.init()
site = flare.get_site_name()
if args.nodes:
    node = "threads"
    if "ray" in sys.modules:
        import ray
        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    (Path(args.nodes) / site).write_text(node)
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if args.block:
        who, when, folder = args.block.split(":", 2)
        if who == site and int(when) == model.current_round:
            (Path(folder) / site).write_text("started")
            time.sleep(600)  # until its actor is killed
    rng = np.random.default_rng(int(site.split("-")[1]) * 1000 + model.current_round)
    weights = model.params[NUMPY_KEY]
    new = weights + rng.standard_normal(weights.shape).astype(weights.dtype) / 3
    flare.send(FLModel(params_type=ParamsType.FULL, params={NUMPY_KEY: new},
                       meta={"NUM_STEPS_CURRENT_ROUND": 1 + int(site.split("-")[1])}))
'''


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One 3-node Ray cluster (one CPU each) for the whole module: Ray starts once."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 1, "include_dashboard": False}
    nodes = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(2):
        nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, log_to_driver=False, configure_logging=False)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def _numpy_recipe(tmp_path: Path, args: str = "", **kwargs: Any) -> Any:
    script = tmp_path / "node_client.py"
    script.write_text(SCRIPT)
    options: dict[str, Any] = {"min_clients": 2, "num_rounds": 3}
    options.update(kwargs)
    return numpy_recipe(**options, train_script=str(script), train_args=args)


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


def test_sites_spread_over_nodes_give_the_thread_backends_bits(
    cluster: Any, tmp_path: Path
) -> None:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    models = {}
    for backend in ("threads", "ray"):
        recipe = _numpy_recipe(tmp_path, f"--nodes {nodes}", name=f"bits-{backend}")
        env = SimEnv(
            num_clients=3, workspace_root=str(tmp_path / "ws"), progress=False, backend=backend
        )
        run = recipe.execute(env)
        assert run.get_status() == COMPLETED, run.get_message()
        models[backend] = global_model(run.get_result())
        assert [r["sites"] for r in round_records(run.get_result())] == [
            ["site-1", "site-2", "site-3"]
        ] * 3
    assert models["ray"].tobytes() == models["threads"].tobytes()
    assert not np.array_equal(models["ray"], INITIAL)  # the sites' noise is in it
    reported = {site: (nodes / site).read_text() for site in ("site-1", "site-2", "site-3")}
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert set(reported.values()) <= alive
    assert len(set(reported.values())) >= 2, reported  # spread over nodes


def test_external_process_scripts_in_ray_actors_give_the_in_process_bits(
    cluster: Any, tmp_path: Path
) -> None:
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    models = {}
    for external in (False, True):
        recipe = _numpy_recipe(
            tmp_path,
            f"--nodes {nodes}",
            name=f"external-{external}",
            launch_external_process=external,
        )
        env = SimEnv(
            num_clients=3, workspace_root=str(tmp_path / "ws"), progress=False, backend="ray"
        )
        run = recipe.execute(env)
        assert run.get_status() == COMPLETED, run.get_message()
        models[external] = global_model(run.get_result())
    assert models[True].tobytes() == models[False].tobytes()
    assert not np.array_equal(models[True], INITIAL)
    # the external scripts ran in their own processes: Ray is not initialised there
    reported = {site: (nodes / site).read_text() for site in ("site-1", "site-2", "site-3")}
    assert set(reported.values()) == {"threads"}, reported


def test_a_killed_actor_is_a_dead_site_and_the_job_goes_on(cluster: Any, tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    recipe = _numpy_recipe(tmp_path, f"--block site-3:1:{started}", name="killed")
    env = SimEnv(
        num_clients=3,
        workspace_root=str(tmp_path / "ws"),
        progress=False,
        backend="ray",
        site_resources={"num_cpus": 0.5},  # one actor per site on 3 CPUs
        wait=False,
    )
    run = recipe.execute(env)
    _wait_for(started / "site-3")
    backend = run.simulation.backend
    ray.kill(backend.site_actor["site-3"], no_restart=True)
    run.get_result(timeout=120)
    assert run.get_status() == COMPLETED, run.get_message()
    records = round_records(run.get_result())
    assert records[0]["sites"] == ["site-1", "site-2", "site-3"]
    assert [r["sites"] for r in records[1:]] == [["site-1", "site-2"]] * 2
    assert "site-3's Ray actor died" in backend.dead["site-3"]
    log = (Path(run.get_result()) / "server" / "log.txt").read_text()
    assert "site-3's Ray actor died" in log


def test_abort_stops_the_actors(cluster: Any, tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    recipe = _numpy_recipe(tmp_path, f"--block site-1:0:{started}", name="aborted")
    env = SimEnv(
        num_clients=2,
        workspace_root=str(tmp_path / "ws"),
        progress=False,
        backend="ray",
        wait=False,
    )
    run = recipe.execute(env)
    _wait_for(started / "site-1")
    actors = list(run.simulation.backend.site_actor.values())
    run.abort()
    assert run.get_status().startswith("FINISHED:ABORTED"), run.get_status()
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.node_id.remote(), timeout=60)


def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(MissingDependencyError, match=r"ember-core\[ray\]"):
        SimEnv(num_clients=2, backend="ray")


def test_the_pool_is_sized_to_the_clusters_resources() -> None:
    one_cpu = check_site_resources(None)
    assert one_cpu == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert pool_size(10_000, {"CPU": 16.0}, one_cpu) == 16
    assert pool_size(3, {"CPU": 16.0}, one_cpu) == 3
    quarter_gpu = check_site_resources({"num_cpus": 1, "num_gpus": 0.25})
    assert pool_size(1000, {"CPU": 64.0, "GPU": 2.0}, quarter_gpu) == 8
    memory = check_site_resources({"num_cpus": 0, "memory": 2**30})
    assert pool_size(100, {"CPU": 4.0, "memory": 5.5 * 2**30}, memory) == 5
    with pytest.raises(RecipeArgumentError, match="cannot hold one site"):
        pool_size(4, {"CPU": 2.0}, quarter_gpu)


def test_a_fractional_gpu_caps_the_actors_gpu_memory_to_that_fraction() -> None:
    assert gpu_memory_fraction(0.25) == 0.25
    assert gpu_memory_fraction(0.5) == 0.5
    assert gpu_memory_fraction(1.0) is None  # a whole GPU: no cap
    assert gpu_memory_fraction(0.0) is None


def test_bad_backend_arguments_are_refused() -> None:
    with pytest.raises(RecipeArgumentError, match="backend must be one of"):
        SimEnv(num_clients=2, backend="dask")
    with pytest.raises(RecipeArgumentError, match="backend='ray' only"):
        SimEnv(num_clients=2, ray_address="auto")
    with pytest.raises(RecipeArgumentError, match="unknown keys"):
        SimEnv(num_clients=2, backend="ray", site_resources={"gpus": 1})
