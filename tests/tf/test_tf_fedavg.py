"""tensorflow-fedavg and tensorflow-cyclic jobs in SimEnv: exact averages, every way to give
the model, NVFlare's Keras params convention, the same bits in and out of process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from tf_tiny import ConstNet, functional

from ember import SimEnv
from ember.recipes import FedAvgRecipe as UnifiedFedAvgRecipe
from ember.recipes import RecipeArgumentError
from ember_tf.convert import model_params
from ember_tf.framework import ensure_built
from ember_tf.recipes import CyclicRecipe, FedAvgRecipe

SCRIPTS = Path(__file__).parent / "scripts"
ADD = str(SCRIPTS / "tf_add_client.py")
FACTORY = {"path": "tf_tiny.TinyNet", "args": {"width": 3}}  # random initial weights


def run(tmp_path: Path, recipe: Any, clients: int = 2) -> Path:
    env = SimEnv(num_clients=clients, workspace_root=str(tmp_path / "ws"), progress=False)
    result = recipe.execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    return Path(result.get_result())


def saved_weights(result: Path, like: keras.Model, name: str = "global_model") -> dict[str, Any]:
    ensure_built(like, None)
    like.load_weights(str(result / "server" / "models" / f"{name}.weights.h5"))
    return model_params(like)


def initial_of(model: keras.Model) -> dict[str, np.ndarray]:
    return model_params(model)


def fedavg_expected(
    initial: dict[str, np.ndarray], rounds: int, transfer: str = "FULL"
) -> dict[str, np.ndarray]:
    # site-k sends weights + k with weight k: each round adds (1*1 + 2*2) / 3 in float32,
    # as the server computes it: the weighted mean of the models, or of their differences
    one, two, three = np.float32(1), np.float32(2), np.float32(3)
    out = dict(initial)
    for _ in range(rounds):
        if transfer == "FULL":
            out = {k: ((v + 1) * one + (v + 2) * two) / three for k, v in out.items()}
        else:
            out = {
                k: v + (((v + 1) - v) * one + ((v + 2) - v) * two) / three for k, v in out.items()
            }
    return out


@pytest.mark.parametrize(
    ("external", "transfer"), [(False, "FULL"), (True, "FULL"), (False, "DIFF"), (True, "DIFF")]
)
def test_global_weights_are_the_hand_computed_weighted_average(
    tmp_path: Path, external: bool, transfer: str
) -> None:
    # the server builds the model from its class (constant initial weights, built from the
    # class's _input_shape); sites get {layer: [arrays]} and send weights + k, weighted k
    factory = {"path": "tf_tiny.ConstNet", "args": {"width": 3}}
    recipe = FedAvgRecipe(
        name="tf-job",
        min_clients=2,
        num_rounds=2,
        model=factory,
        train_script=ADD,
        launch_external_process=external,
        params_transfer_type=transfer,  # a DIFF is taken at the site, in the exchange format
    )
    result = run(tmp_path, recipe)
    reference = ConstNet(3)
    reference.build((None, 3))
    expected = fedavg_expected(initial_of(reference), 2, transfer)
    saved = saved_weights(result, ConstNet(3))
    assert set(saved) == {"hidden/0", "hidden/1", "out/0", "out/1"}
    for key, value in expected.items():
        np.testing.assert_array_equal(saved[key], value)
    assert (result / "server" / "models" / "best_model.weights.h5").is_file()


def test_a_model_instance_is_averaged_bit_exactly_in_and_out_of_process(tmp_path: Path) -> None:
    model = functional(3)
    initial = initial_of(model)
    expected = fedavg_expected(initial, 2)
    results = []
    for external in (False, True):
        recipe = FedAvgRecipe(
            name=f"tf-ext-{external}",
            min_clients=2,
            num_rounds=2,
            model=model,
            train_script=ADD,
            launch_external_process=external,
        )
        results.append(saved_weights(run(tmp_path / str(external), recipe), functional(3)))
    for key, value in expected.items():
        np.testing.assert_array_equal(results[0][key], value)
        np.testing.assert_array_equal(results[1][key], value)  # the same bits in a subprocess


def test_the_unified_recipe_with_framework_tensorflow_runs_the_same_job(tmp_path: Path) -> None:
    model = functional(3)
    expected = fedavg_expected(initial_of(model), 1)
    recipe = UnifiedFedAvgRecipe(
        framework="tensorflow", min_clients=2, num_rounds=1, model=model, train_script=ADD
    )
    saved = saved_weights(run(tmp_path, recipe), functional(3))
    for key, value in expected.items():
        np.testing.assert_array_equal(saved[key], value)


def test_an_unbuilt_model_is_built_from_input_shape_or_its_input_shape_attribute(
    tmp_path: Path,
) -> None:
    unbuilt = keras.Sequential([keras.layers.Dense(2, name="only")])
    with pytest.raises(RecipeArgumentError, match="input_shape"):
        FedAvgRecipe(min_clients=2, model=unbuilt, train_script=ADD)
    recipe = FedAvgRecipe(min_clients=2, model=unbuilt, input_shape=[5], train_script=ADD)
    job = json.loads((recipe.export(tmp_path / "job") / "job.json").read_text())
    assert job["workflows"][0]["args"]["persistor"]["args"]["input_shape"] == [5]
    assert unbuilt.built
    # NVFlare's hello-tf convention: the class sets _input_shape and is built on the server
    recipe = FedAvgRecipe(min_clients=2, num_rounds=1, model=FACTORY, train_script=ADD)
    result = run(tmp_path / "factory", recipe)
    assert (result / "server" / "models" / "global_model.weights.h5").is_file()


def test_initial_checkpoints_keras_and_weights_h5(tmp_path: Path) -> None:
    model = functional(3)
    full = tmp_path / "start.keras"
    model.save(str(full))
    weights_only = tmp_path / "start.weights.h5"
    model.save_weights(str(weights_only))
    expected = fedavg_expected(initial_of(model), 1)
    for ckpt, given in (
        (str(full), None),
        (str(weights_only), {"path": "tf_tiny.functional", "args": {"width": 3}}),
    ):
        recipe = FedAvgRecipe(
            name="ckpt",
            min_clients=2,
            num_rounds=1,
            model=given,
            initial_ckpt=ckpt,
            train_script=ADD,
        )
        saved = saved_weights(run(tmp_path / f"run-{Path(ckpt).name}", recipe), functional(3))
        for key, value in expected.items():
            np.testing.assert_array_equal(saved[key], value)
    with pytest.raises(RecipeArgumentError, match="weights only"):
        FedAvgRecipe(min_clients=2, initial_ckpt=str(weights_only), train_script=ADD)
    with pytest.raises(RecipeArgumentError, match=r"\.keras or \.weights\.h5"):
        FedAvgRecipe(min_clients=2, initial_ckpt=str(tmp_path / "x.pt"), train_script=ADD)


def test_nvflare_class_path_models_and_bad_models_are_checked() -> None:
    recipe = FedAvgRecipe(
        min_clients=2, model={"class_path": "tf_tiny.TinyNet", "args": {}}, train_script=ADD
    )
    args = recipe.job.workflows[0]["args"]
    assert args["persistor"]["args"]["factory"] == {"path": "tf_tiny.TinyNet", "args": {}}
    assert args["task_meta"] == {"model_class": {"path": "tf_tiny.TinyNet", "args": {}}}
    assert recipe.job.client.params_format == "tensorflow"
    with pytest.raises(RecipeArgumentError, match=r"keras\.Model instance"):
        FedAvgRecipe(min_clients=2, model=[1.0, 2.0], train_script=ADD)


def test_cyclic_passes_the_model_from_site_to_site_in_order(tmp_path: Path) -> None:
    model = functional(3)
    initial = initial_of(model)
    recipe = CyclicRecipe(
        name="tf-cyclic", min_clients=3, num_rounds=2, model=model, train_script=ADD
    )
    result = run(tmp_path, recipe, clients=3)
    saved = saved_weights(result, functional(3))
    # each round the model visits site-1, site-2, site-3, each adding its k: +6 per round
    for key, value in initial.items():
        np.testing.assert_array_equal(saved[key], value + np.float32(1) + 2 + 3 + 1 + 2 + 3)
    lines = (result / "server" / "round_metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["sites"] for line in lines] == [["site-1", "site-2", "site-3"]] * 2
