"""SCAFFOLD for Keras: TFScaffoldHelper against hand computations (custom loop, corrected
gradients, model.fit with ScaffoldCallback), and tensorflow-scaffold jobs in SimEnv."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file
from tf_scaffold_net import scaffold_net

from ember import SimEnv
from ember_tf.convert import model_params
from ember_tf.recipes import ScaffoldRecipe
from ember_tf.scaffold import (
    SCAFFOLD_C_DIFF,
    SCAFFOLD_C_GLOBAL,
    ScaffoldCallback,
    TFScaffoldHelper,
    get_lr_values,
)

SCRIPTS = Path(__file__).parent / "scripts"
SITES = ("site-1", "site-2")


def linear(kernel: list[list[float]], bias: list[float]) -> keras.Sequential:
    """A Dense layer "dense" (exchange keys dense/0: kernel, dense/1: bias)."""
    model = keras.Sequential(
        [keras.Input((len(kernel),)), keras.layers.Dense(len(bias), name="dense")]
    )
    model.get_layer("dense").set_weights([np.array(kernel, np.float32), np.array(bias, np.float32)])
    return model


def controls(kernel: list[list[float]], bias: list[float]) -> dict[str, tf.Tensor]:
    return {"dense/0": tf.constant(kernel, tf.float32), "dense/1": tf.constant(bias, tf.float32)}


def weights(model: keras.Model) -> dict[str, np.ndarray]:
    return model_params(model)


# -- the helper -----------------------------------------------------------------------------
def test_model_update_subtracts_lr_times_the_control_difference() -> None:
    model = linear([[1.0], [2.0]], [3.0])
    helper = TFScaffoldHelper()
    helper.init(model)
    c_global = controls([[1.0], [-2.0]], [0.5])
    c_local = controls([[0.5], [0.5]], [1.5])
    helper.model_update(model, 0.1, c_global, c_local)
    helper.model_update(model, tf.constant(0.1), c_global, c_local)  # a tensor lr works too
    # w - 2 * 0.1 * (c - c_i): [1 - 0.2*0.5, 2 - 0.2*(-2.5)], 3 - 0.2*(-1)
    np.testing.assert_allclose(weights(model)["dense/0"], [[0.9], [2.5]], rtol=1e-6)
    np.testing.assert_allclose(weights(model)["dense/1"], [3.2], rtol=1e-6)
    assert helper.cnt == 2
    c, c_i = helper.get_params()  # init's zeros, the count restarted
    assert set(c) == set(c_i) == {"dense/0", "dense/1"}
    assert not np.any(c["dense/0"].numpy())
    assert helper.cnt == 0


def test_terms_update_with_constant_gradients_gives_the_gradient() -> None:
    """Option II with a constant gradient g: y_K = x - K*lr*(g + c - c_i), so
    c_i+ = c_i - c + (x - y_K) / (K*lr) = g exactly, whatever c and c_i were."""
    model = linear([[1.0], [2.0]], [3.0])
    start = weights(model)
    g = controls([[0.25], [-1.0]], [2.0])
    helper = TFScaffoldHelper()
    helper.init(model)
    helper.load_global_controls({"dense/0": np.array([[1.0], [-2.0]]), "dense/1": np.array([0.5])})
    helper.c_local = controls([[0.5], [0.5]], [1.5])
    c_global, c_local = helper.get_params()
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    variables = {v.path.rsplit("/", 1)[1]: v for v in model.trainable_variables}
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(variables["kernel"] * g["dense/0"])
            loss += tf.reduce_sum(variables["bias"] * g["dense/1"])
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        helper.model_update(model, get_lr_values(optimizer), c_global, c_local)
    helper.terms_update(model, 0.5, c_global, c_local, start)
    assert helper.c_local is not None
    for key in ("dense/0", "dense/1"):
        np.testing.assert_allclose(helper.c_local[key].numpy(), g[key].numpy(), rtol=1e-6)
        np.testing.assert_allclose(
            helper.get_delta_controls()[key], (g[key] - c_local[key]).numpy(), rtol=1e-6
        )
    assert isinstance(helper.get_delta_controls()["dense/0"], np.ndarray)


def quadratic_reference(
    w0: np.ndarray, t: np.ndarray, c: np.ndarray, ci: np.ndarray, lr: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """loss = 0.5 * ||w - t||^2 (gradient w - t): K steps of SGD, each corrected by c - c_i;
    returns y_K and c_i+ = c_i - c + (x - y_K) / (K * lr)."""
    y = w0.copy()
    for _ in range(steps):
        y = y - lr * (y - t)
        y = y - lr * (c - ci)
    return y, ci - c + (w0 - y) / (steps * lr)


W0 = np.array([[1.0], [-2.0], [0.5]])
TARGET = np.array([[0.0], [1.0], [2.0]])
C = np.array([[0.2], [-0.1], [0.3]])
CI = np.array([[-0.4], [0.1], [0.0]])


def quadratic_setup() -> tuple[keras.Sequential, TFScaffoldHelper, Any]:
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, use_bias=False, name="dense")]
    )
    model.get_layer("dense").set_weights([W0.astype(np.float32)])
    helper = TFScaffoldHelper()
    # the server's c, keyed as the exchange format; its non-trainable entries are ignored
    helper.start_round(model, {SCAFFOLD_C_GLOBAL: {"dense/0": C, "other/0": np.zeros(2)}})
    assert helper.c_local is not None
    helper.c_local = {"dense/0": tf.constant(CI, tf.float32)}
    return model, helper, tf.constant(TARGET, tf.float32)


@pytest.mark.parametrize("how", ["step", "correct_gradients"])
def test_a_custom_loop_matches_a_numpy_loop_on_a_quadratic_loss(how: str) -> None:
    lr, steps = 0.3, 4
    model, helper, target = quadratic_setup()
    helper.get_params()  # c_i replaced above: take it into this round's controls
    optimizer = keras.optimizers.SGD(learning_rate=lr)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_sum(tf.square(model.trainable_variables[0] - target))
        grads = tape.gradient(loss, model.trainable_variables)
        if how == "correct_gradients":  # g + c - c_i in one optimizer step
            grads = helper.correct_gradients(model, grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        if how == "step":
            helper.step(model, lr)
    meta = helper.end_round(model, lr)
    y, c_new = quadratic_reference(W0, TARGET, C, CI, lr, steps)
    assert helper.cnt == steps
    np.testing.assert_allclose(weights(model)["dense/0"], y, rtol=1e-5)
    assert helper.c_local is not None
    np.testing.assert_allclose(helper.c_local["dense/0"].numpy(), c_new, rtol=1e-5)
    assert set(meta) == {SCAFFOLD_C_DIFF}
    assert set(meta[SCAFFOLD_C_DIFF]) == {"dense/0"}
    np.testing.assert_allclose(meta[SCAFFOLD_C_DIFF]["dense/0"], c_new - CI, rtol=1e-5)


@pytest.mark.parametrize("flow", ["ember", "nvflare"])
def test_model_fit_with_the_callback_corrects_after_every_batch(flow: str) -> None:
    """model.fit, 4 batches of one row, loss 0.5 * ||w - t||^2: the same 4 corrected SGD
    steps as the numpy loop, with Ember's round calls or NVFlare's (init,
    load_global_controls, get_params, terms_update against a cloned global model)."""
    lr, steps = 0.3, 4
    model, helper, target = quadratic_setup()
    if flow == "nvflare":
        helper = TFScaffoldHelper()
        helper.init(model)
        helper.load_global_controls({"dense/0": C})
        helper.c_local = {"dense/0": tf.constant(CI, tf.float32)}
        model_global = keras.models.clone_model(model)
        model_global.set_weights(model.get_weights())
    c_global_para, c_local_para = helper.get_params()
    dense = model.get_layer("dense")

    def loss(y_true: Any, y_pred: Any) -> Any:
        return 0.5 * tf.reduce_sum(tf.square(dense.kernel - target)) + 0.0 * tf.reduce_sum(y_pred)

    optimizer = keras.optimizers.SGD(learning_rate=lr)
    model.compile(optimizer=optimizer, loss=loss)
    x = np.zeros((steps, 3), np.float32)
    model.fit(
        x,
        np.zeros((steps, 1), np.float32),
        batch_size=1,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[ScaffoldCallback(helper)],
    )
    if flow == "nvflare":
        curr_lr = get_lr_values(optimizer)
        helper.terms_update(model, curr_lr, c_global_para, c_local_para, model_global)
    else:
        helper.end_round(model, lr)
    y, c_new = quadratic_reference(W0, TARGET, C, CI, lr, steps)
    assert helper.cnt == steps
    np.testing.assert_allclose(weights(model)["dense/0"], y, rtol=1e-5)
    assert helper.c_local is not None
    np.testing.assert_allclose(helper.c_local["dense/0"].numpy(), c_new, rtol=1e-5)
    np.testing.assert_allclose(helper.get_delta_controls()["dense/0"], c_new - CI, rtol=1e-5)


def test_round_api_reads_and_writes_the_task_meta() -> None:
    model = scaffold_net()
    helper = TFScaffoldHelper()
    c_global, c_local = helper.start_round(model, {})  # round 0: no c yet means zeros
    trainable = {"dense/0", "dense/1", "bn/0", "bn/1", "out/0", "out/1"}
    assert set(c_global) == set(c_local) == trainable  # not bn/2, bn/3 (moving statistics)
    x = tf.constant(np.random.default_rng(0).standard_normal((6, 3)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_variables, strict=True))
    helper.step(model, 0.1)
    meta = helper.end_round(model, 0.1)
    diff = meta[SCAFFOLD_C_DIFF]
    assert set(diff) == trainable
    first = {k: v.copy() for k, v in diff.items()}
    assert helper.c_local is not None
    for key, value in helper.c_local.items():  # c_i was 0: c_i+ is the delta
        np.testing.assert_array_equal(value.numpy(), first[key])
    # next round: the server's c (for every float entry, bn/2 and bn/3 too), c_i carried over
    server_c = {k: np.full(v.shape, 0.5, np.float32) for k, v in model_params(model).items()}
    c_global, c_local = helper.start_round(model, {SCAFFOLD_C_GLOBAL: server_c})
    assert float(c_global["out/1"][0]) == 0.5
    np.testing.assert_array_equal(c_local["dense/0"].numpy(), first["dense/0"])
    with pytest.raises(ValueError, match=r"lack weight 'dense/1'"):
        helper.load_global_controls({"dense/0": server_c["dense/0"]})
    with pytest.raises(ValueError, match="has shape"):
        helper.load_global_controls({**server_c, "out/1": np.zeros(3)})
    with pytest.raises(ValueError, match="at least one model_update"):
        helper.end_round(model, 0.1)
    with pytest.raises(ValueError, match="call start_round"):
        TFScaffoldHelper().step(model, 0.1)


# -- jobs -----------------------------------------------------------------------------------
def run_job(tmp_path: Path, train_args: str = "", **kwargs: Any) -> Any:
    out = tmp_path / "out"
    out.mkdir()
    recipe = ScaffoldRecipe(
        min_clients=2,
        num_rounds=2,
        model=scaffold_net(),
        train_script=str(SCRIPTS / "tf_scaffold_client.py"),
        train_args=f"--out {out} {train_args}",
        key_metric=None,
        **kwargs,
    )
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    return recipe.execute(env)


def sent(tmp_path: Path, site: str, rnd: int) -> dict[str, dict[str, np.ndarray]]:
    """What ``site``'s script received (c_global) and sent (c_diff, params) in round ``rnd``."""
    out: dict[str, dict[str, np.ndarray]] = {"c_global": {}, "c_diff": {}, "params": {}}
    with np.load(tmp_path / "out" / f"{site}-r{rnd}.npz") as data:
        for key in data.files:
            part, name = key.split("/", 1)
            out[part][name] = data[key]
    return out


@pytest.mark.parametrize("external", [False, True], ids=["in-process", "external-process"])
def test_server_control_variates_are_the_hand_computed_sums(tmp_path: Path, external: bool) -> None:
    run = run_job(tmp_path, launch_external_process=external)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    result = Path(run.get_result())
    records = {site: [sent(tmp_path, site, rnd) for rnd in (0, 1)] for site in SITES}
    float_keys = set(model_params(scaffold_net()))
    assert {"bn/2", "bn/3"} <= float_keys  # non-trainable, float: the server keeps c for them

    for site in SITES:  # round 0: zeros for every float entry of the model
        received = records[site][0]["c_global"]
        assert set(received) == float_keys
        assert all(not v.any() for v in received.values())
        assert set(records[site][0]["c_diff"]) == float_keys - {"bn/2", "bn/3"}
    # c += (sum of the sites' c_diff) / N, N = 2 sites, in float32 as on the server
    n = np.float32(2)
    c1 = {k: np.zeros_like(v) for k, v in records["site-1"][0]["c_global"].items()}
    for key in records["site-1"][0]["c_diff"]:
        c1[key] = (records["site-1"][0]["c_diff"][key] + records["site-2"][0]["c_diff"][key]) / n
    for site in SITES:  # round 1's tasks carried exactly what the server computed
        received = records[site][1]["c_global"]
        assert set(received) == float_keys
        for key, value in c1.items():
            np.testing.assert_allclose(received[key], value, rtol=1e-6, atol=0)
    c2 = dict(c1)
    for key in records["site-1"][1]["c_diff"]:
        c2[key] = (
            c1[key]
            + (records["site-1"][1]["c_diff"][key] + records["site-2"][1]["c_diff"][key]) / n
        )
    saved = load_file(str(result / "server" / "models" / "scaffold_c_global.safetensors"))
    assert set(saved) == float_keys
    for key, value in c2.items():
        assert saved[key].dtype == np.float32
        np.testing.assert_allclose(saved[key], value, rtol=1e-6, atol=1e-7)
    assert not saved["bn/3"].any()  # no site sends controls for the moving statistics
    assert np.abs(saved["dense/0"]).sum() > 0

    # the model: FedAvg's average weighted by each site's steps (K = 2 and 3)
    model = scaffold_net()
    model.load_weights(str(result / "server" / "models" / "global_model.weights.h5"))
    final = model_params(model)
    p1, p2 = records["site-1"][1]["params"], records["site-2"][1]["params"]
    for key in float_keys:
        expected = (p1[key] * np.float32(2) + p2[key] * np.float32(3)) / np.float32(5)
        np.testing.assert_allclose(final[key], expected, rtol=1e-5, atol=1e-6)


def test_a_site_without_c_diff_fails_the_job_naming_it(tmp_path: Path) -> None:
    run = run_job(tmp_path, "--no-diff site-2")
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "site-2 sent nothing as meta['scaffold_c_diff']" in run.get_message()


def test_recipe_runs_the_scaffold_controller(tmp_path: Path) -> None:
    recipe = ScaffoldRecipe(
        min_clients=2, model=scaffold_net(), train_script=str(SCRIPTS / "tf_scaffold_client.py")
    )
    recipe.export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["name"] == "scaffold"
    assert job["meta"] == {"recipe": "ScaffoldRecipe", "framework": "tensorflow"}
    (workflow,) = job["workflows"]
    assert workflow["target"] == "ember.controllers:ScaffoldController"
    assert workflow["args"]["persistor"]["target"] == "ember_tf.persistor:KerasPersistor"
