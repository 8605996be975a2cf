"""FedProx for Keras: the proximal term's value and gradient against the formula (custom loop
and model.fit), and the recipe's mu at the sites of a tensorflow-fedprox job."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from ember import SimEnv
from ember.client import FLModel
from ember.recipes import RecipeArgumentError
from ember_tf.client import model_weights
from ember_tf.convert import model_params
from ember_tf.fedprox import TFFedProxLoss, fedprox_mu, trainable_weights
from ember_tf.recipes import FedProxRecipe

SCRIPTS = Path(__file__).parent / "scripts"
MOVE = {
    "dense/0": np.array([[1.0, -2.0], [0.5, 0.0], [3.0, -1.0]], np.float32),
    "dense/1": np.array([2.0, -0.25], np.float32),
}
# sum of squared moves: 1 + 4 + 0.25 + 0 + 9 + 1 + 4 + 0.0625
SQUARED = 19.3125


def dense(seed: int = 0) -> keras.Sequential:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    rng = np.random.default_rng(seed)
    layer = model.get_layer("dense")
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights])
    return model


def moved(model: keras.Sequential) -> keras.Sequential:
    """A copy of ``model`` with every weight moved by ``MOVE``."""
    out = dense()
    layer = model.get_layer("dense")
    out.get_layer("dense").set_weights(
        [w + MOVE[f"dense/{i}"] for i, w in enumerate(layer.get_weights())]
    )
    return out


def test_term_and_gradient_match_the_formula() -> None:
    global_model = dense()
    model = moved(global_model)
    proximal = TFFedProxLoss(mu=0.2)
    with tf.GradientTape() as tape:
        loss = proximal(model, global_model)
    assert float(loss) == pytest.approx(0.2 / 2 * SQUARED, rel=1e-6)
    grads = tape.gradient(loss, model.trainable_variables)
    # d/dw of mu/2 * ||w - w_g||^2 is mu * (w - w_g); the global model gets none
    by_key = dict(zip(trainable_weights(model), grads, strict=True))
    for key, move in MOVE.items():
        np.testing.assert_allclose(by_key[key].numpy(), 0.2 * move, rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = proximal(model, global_model)
    unused = tape.gradient(loss, global_model.trainable_variables)
    assert all(g is None for g in unused)  # the target is a constant


@pytest.mark.parametrize("target", ["keras-params", "exchange-params", "variable-list"])
def test_every_form_of_the_global_weights_gives_the_same_term(target: str) -> None:
    global_model = dense()
    model = moved(global_model)
    given: Any
    local: Any = model
    if target == "keras-params":  # what the script received: {layer: [arrays]}
        given = FLModel(params=model_weights(global_model)).params
    elif target == "exchange-params":
        given = model_params(global_model)
    else:  # NVFlare's copy.deepcopy(model.trainable_variables), matched by position
        given = [tf.identity(v) for v in global_model.trainable_variables]
        local = model.trainable_variables
    assert float(TFFedProxLoss(1.0)(local, given)) == pytest.approx(SQUARED / 2, rel=1e-6)
    assert float(TFFedProxLoss(1.0).model_difference_norm(given, local)) == pytest.approx(
        SQUARED, rel=1e-6
    )


def test_term_is_zero_at_the_global_model_and_refuses_other_models() -> None:
    global_model = dense()
    params = model_params(global_model)
    assert float(TFFedProxLoss(5.0)(dense(), params)) == 0.0
    assert float(TFFedProxLoss(0.0)(moved(global_model), params)) == 0.0
    with pytest.raises(KeyError, match="dense/0"):
        TFFedProxLoss()(global_model, {"dense/1": params["dense/1"]})
    with pytest.raises(ValueError, match="2 trainable weights but 1"):
        TFFedProxLoss()(global_model.trainable_variables, [params["dense/0"]])


@pytest.mark.parametrize("mu", [-0.01, math.nan, math.inf, "0.1", True, None])
def test_loss_refuses_a_bad_mu(mu: Any) -> None:
    with pytest.raises(ValueError, match="mu must be a finite number >= 0"):
        TFFedProxLoss(mu)


def test_wrapped_loss_in_model_fit_is_the_formula() -> None:
    """One SGD step of model.fit with MSE + the proximal term, against the hand gradient:
    w - lr * (dMSE/dw + mu * (w - w_g))."""
    global_model = dense()
    model = moved(global_model)
    x = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]], np.float32)
    y = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    mse = keras.losses.MeanSquaredError()
    before = model_params(model)
    with tf.GradientTape() as tape:
        base = mse(y, model(x))
    grads = dict(
        zip(trainable_weights(model), tape.gradient(base, model.trainable_variables), strict=True)
    )
    lr, mu = 0.1, 0.5
    proximal = TFFedProxLoss(mu)
    model.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss=proximal.wrap(mse, model, model_weights(global_model)),
    )
    history = model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(float(base) + mu / 2 * SQUARED, rel=1e-5)
    after = model_params(model)
    for key, move in MOVE.items():
        expected = before[key] - lr * (grads[key].numpy() + mu * move)
        np.testing.assert_allclose(after[key], expected, rtol=1e-5, atol=1e-6)


def test_fedprox_mu_reads_the_task_meta() -> None:
    assert fedprox_mu(FLModel(meta={"fedprox_mu": 0.25})) == 0.25
    assert fedprox_mu(FLModel()) is None
    assert fedprox_mu(FLModel(), default=0.01) == 0.01
    with pytest.raises(ValueError, match="fedprox_mu"):
        fedprox_mu(FLModel(meta={"fedprox_mu": -1}))


def options(**kwargs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "tf-fedprox",
        "min_clients": 2,
        "num_rounds": 2,
        "model": dense(),
        "train_script": str(SCRIPTS / "tf_fedprox_client.py"),
    }
    return {**base, **kwargs}


def test_sites_train_with_the_recipes_mu(tmp_path: Path) -> None:
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    model = dense()
    initial = model_params(model)
    result = FedProxRecipe(**options(model=model, fedprox_mu=0.5)).execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    server = Path(result.get_result()) / "server"
    rounds = [
        json.loads(line)
        for line in (server / "round_metrics.jsonl").read_text().split("\n")
        if line
    ]
    assert [r["round"] for r in rounds] == [0, 1]
    for record in rounds:
        assert {s: m["fedprox_mu"] for s, m in record["site_metrics"].items()} == {
            "site-1": 0.5,
            "site-2": 0.5,
        }
    # site-k moves every weight by 2k - mu*k (see the script), weighted by k:
    # (1 * 1.5 + 2 * 3.0) / 3 = 2.5 per round; plain FedAvg (mu = 0) would move 10/3
    saved = dense()
    saved.load_weights(str(server / "models" / "global_model.weights.h5"))
    for key, value in model_params(saved).items():
        np.testing.assert_allclose(value, initial[key] + 2 * 2.5, rtol=1e-5, atol=1e-5)


def test_mu_is_merged_into_the_task_meta(tmp_path: Path) -> None:
    FedProxRecipe(**options(fedprox_mu=0)).export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    args = job["workflows"][0]["args"]
    assert args["task_meta"] == {"fedprox_mu": 0.0}
    assert job["meta"] == {"recipe": "FedProxRecipe", "framework": "tensorflow"}
    assert job["workflows"][0]["target"] == "ember.runtime.controllers.fedavg:FedAvgController"
    assert FedProxRecipe(**options()).fedprox_mu == 0.01  # the default
    # a model built on the server from its class: model_class stays in the meta
    factory = {"path": "models.Net", "args": {}}
    FedProxRecipe(**options(model=factory, fedprox_mu=0.1)).export(str(tmp_path / "job2"))
    args = json.loads((tmp_path / "job2" / "job.json").read_text())["workflows"][0]["args"]
    assert args["task_meta"] == {"model_class": factory, "fedprox_mu": 0.1}


@pytest.mark.parametrize("mu", [-0.5, math.nan, "0.1", True, None, [0.1]])
def test_recipe_refuses_a_bad_fedprox_mu(mu: Any) -> None:
    with pytest.raises(RecipeArgumentError, match="fedprox_mu must be a finite number >= 0"):
        FedProxRecipe(**options(fedprox_mu=mu))
