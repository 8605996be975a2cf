"""A Keras job in PocEnv (real server and client processes, gRPC with mutual TLS): the same
bits as in SimEnv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tf_tiny import ConstNet

from ember import SimEnv
from ember.envs.poc import PocEnv
from ember.system.poc import PocWorkspace
from ember_tf.convert import model_params
from ember_tf.framework import ensure_built
from ember_tf.recipes import FedAvgRecipe

SCRIPT = str(Path(__file__).parent / "scripts" / "tf_add_client.py")
COMPLETED = "FINISHED:COMPLETED"


def recipe(external: bool = False) -> FedAvgRecipe:
    return FedAvgRecipe(
        name="tf-poc",
        min_clients=2,
        num_rounds=2,
        model={"path": "tf_tiny.ConstNet", "args": {"width": 3}},
        train_script=SCRIPT,
        launch_external_process=external,
    )


def weights(result: Path) -> dict[str, np.ndarray]:
    model = ensure_built(ConstNet(3), None)
    model.load_weights(str(result / "server" / "models" / "global_model.weights.h5"))
    return model_params(model)


@pytest.mark.parametrize("external", [False, True])
def test_a_keras_job_gives_the_same_bits_in_simenv_and_pocenv(
    poc: PocWorkspace, tmp_path: Path, external: bool
) -> None:
    sim = recipe(external).execute(
        SimEnv(num_clients=2, workspace_root=str(tmp_path / "sim"), progress=False)
    )
    assert sim.get_status() == COMPLETED, sim.get_message()
    run = PocEnv(clients=["site-1", "site-2"], workspace=poc.root).deploy(recipe(external))
    result = Path(run.get_result(timeout=240))
    assert run.get_status() == COMPLETED, run.get_message()
    expected, got = weights(Path(sim.get_result())), weights(result)
    assert set(got) == {"hidden/0", "hidden/1", "out/0", "out/1"}
    for key, value in expected.items():
        assert got[key].tobytes() == value.tobytes()  # bit for bit
