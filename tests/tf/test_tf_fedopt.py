"""FedOpt for Keras: the server's step equals the Keras optimizer applied by hand to the
averaged update; the optimizer's state lasts across rounds; bad arguments fail early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from ember import SimEnv
from ember.cli.recipe_cmd import describe_parameters
from ember.controllers import JobError, ParamsType, WeightedAverage
from ember.recipes import RecipeArgumentError
from ember_tf.controllers.fedopt import FedOptController
from ember_tf.convert import model_params
from ember_tf.recipes import FedOptRecipe

SCRIPTS = Path(__file__).parent / "scripts"
CLIENT = str(SCRIPTS / "tf_fedopt_client.py")
PERSISTOR = {"target": "ember_tf.persistor:KerasPersistor", "args": {}}
SGD = {"path": "keras.optimizers.SGD", "args": {"learning_rate": 1.0, "momentum": 0.6}}
COSINE = {
    "path": "keras.optimizers.schedules.CosineDecay",
    "args": {"initial_learning_rate": 1.0, "decay_steps": 2, "alpha": 0.9},
}


def controller(**kwargs: Any) -> FedOptController:
    return FedOptController(num_rounds=2, min_clients=2, persistor=PERSISTOR, **kwargs)


def bn_model() -> keras.Sequential:
    """Dense (trainable kernel and bias) + batch norm (trainable gamma, beta; non-trainable
    moving mean and variance: keys bn/2 and bn/3)."""
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name="dense"),
            keras.layers.BatchNormalization(name="bn"),
        ]
    )


def initial_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "dense/0": rng.standard_normal((3, 2)).astype(np.float32),
        "dense/1": rng.standard_normal(2).astype(np.float32),
        "step": np.array(7, dtype=np.int64),  # an integer entry: averaged, never stepped
    }


def reference_optimizer(optimizer: dict[str, Any], schedule: dict[str, Any] | None) -> Any:
    cls = getattr(keras.optimizers, optimizer["path"].rsplit(".", 1)[1])
    args = dict(optimizer["args"])
    if schedule is not None:
        args["learning_rate"] = keras.optimizers.schedules.CosineDecay(**schedule["args"])
    return cls(**args)


@pytest.mark.parametrize(
    ("optimizer", "schedule"),
    [(SGD, COSINE), ({"path": "keras.optimizers.Adam", "args": {"learning_rate": 0.05}}, None)],
    ids=["sgd-momentum-cosine", "adam"],
)
@pytest.mark.parametrize("transfer", ["FULL", "DIFF"])
def test_server_step_equals_the_keras_optimizer_applied_by_hand(
    optimizer: dict[str, Any], schedule: dict[str, Any] | None, transfer: str
) -> None:
    ctrl = controller(
        params_transfer_type=transfer, optimizer_args=optimizer, lr_scheduler_args=schedule
    )
    rng = np.random.default_rng(1)
    params = initial_params()
    floats = ("dense/0", "dense/1")
    # the reference: the same Keras optimizer over variables holding the global model
    ref = {k: keras.Variable(params[k], dtype="float32") for k in floats}
    ref_opt = reference_optimizer(optimizer, schedule)
    n = 7.0
    for _ in range(2):
        kept = ctrl.kept_for_update(params)
        before = {k: v.copy() for k, v in params.items()}
        average = WeightedAverage()
        sent = {}
        for site, weight in (("site-1", 1.0), ("site-2", 3.0)):
            update = {k: rng.standard_normal(params[k].shape).astype(np.float32) for k in floats}
            sent[site] = update
            counter = np.array(int(n) + (1 if site == "site-1" else 5), dtype=np.int64)
            average.add(site, {**update, "step": counter}, ParamsType(transfer), weight)
        mean = {
            k: (sent["site-1"][k] * np.float32(1) + sent["site-2"][k] * np.float32(3))
            / np.float32(4)
            for k in floats
        }
        params = ctrl.next_global(kept, average)

        # the pseudo-gradient: global - averaged global (FULL), -averaged diff (DIFF)
        grads = {k: -mean[k] if transfer == "DIFF" else before[k] - mean[k] for k in floats}
        ref_opt.apply_gradients([(keras.ops.convert_to_tensor(grads[k]), ref[k]) for k in floats])
        for key in floats:
            assert params[key].dtype == np.float32
            np.testing.assert_array_equal(params[key], ref[key].numpy())  # bit for bit
        # the integer entry takes FedAvg's average (or the DIFF added)
        counter_avg = (int(n) + 1) * 0.25 + (int(n) + 5) * 0.75
        n = n + counter_avg if transfer == "DIFF" else counter_avg
        assert float(params["step"]) == pytest.approx(n)
        for key, value in before.items():  # the round's global model is left as it was
            np.testing.assert_array_equal(kept[key], value)
    # one optimizer step a round, its state (momentum, Adam's moments) kept across them
    assert int(ctrl.optimizer.iterations.numpy()) == 2
    assert set(ctrl.variables) == set(floats)
    assert len(ctrl.optimizer.variables) == len(ref_opt.variables)
    lr = float(keras.ops.convert_to_numpy(ctrl.optimizer.learning_rate))
    assert lr == pytest.approx(float(keras.ops.convert_to_numpy(ref_opt.learning_rate)))
    if schedule is not None:
        assert lr == pytest.approx(0.9)  # CosineDecay from 1.0 reaches alpha at decay_steps


def test_momentum_carries_over_to_the_next_round() -> None:
    """SGD(1.0, momentum 0.6) with a constant pseudo-gradient -1: +1, then +1.6."""
    ctrl = controller(lr_scheduler_args=None)
    params = {"w": np.zeros(3, np.float32)}
    for expected in (1.0, 2.6):
        average = WeightedAverage()
        average.add("site-1", {"w": params["w"] + 1}, ParamsType.FULL, 1.0)
        params = ctrl.next_global(ctrl.kept_for_update(params), average)
        np.testing.assert_allclose(params["w"], expected, rtol=1e-6)


def test_only_the_trainable_weights_of_the_persistors_model_are_stepped() -> None:
    ctrl = controller(lr_scheduler_args=None)
    model = bn_model()
    ctrl.persistor.model = model  # as KerasPersistor.initial_params leaves it
    params = model_params(model)
    assert set(params) == {"dense/0", "dense/1", "bn/0", "bn/1", "bn/2", "bn/3"}
    average = WeightedAverage()
    average.add("site-1", {k: v + 2 for k, v in params.items()}, ParamsType.FULL, 1.0)
    new = ctrl.next_global(ctrl.kept_for_update(params), average)
    for key in ("dense/0", "dense/1", "bn/0", "bn/1"):  # trainable: SGD's first step, +2
        np.testing.assert_allclose(new[key], params[key] + 2, rtol=1e-6)
    assert set(ctrl.variables) == {"dense/0", "dense/1", "bn/0", "bn/1"}
    # the moving statistics take the average; a second round shows they carry no momentum
    average = WeightedAverage()
    average.add("site-1", {k: v + 2 for k, v in new.items()}, ParamsType.FULL, 1.0)
    newer = ctrl.next_global(ctrl.kept_for_update(new), average)
    np.testing.assert_allclose(newer["bn/2"], params["bn/2"] + 4, rtol=1e-6)
    np.testing.assert_allclose(newer["bn/3"], params["bn/3"] + 4, rtol=1e-6)
    np.testing.assert_allclose(newer["dense/0"], params["dense/0"] + 2 + 3.2, rtol=1e-6)


def test_excluded_entries_keep_their_value_and_are_not_stepped() -> None:
    ctrl = controller(exclude_vars="^dense/1$", lr_scheduler_args=None)
    params = initial_params()
    average = WeightedAverage("^dense/1$")
    average.add("site-1", {k: v + 1 for k, v in params.items()}, ParamsType.FULL, 1.0)
    new = ctrl.next_global(ctrl.kept_for_update(params), average)
    np.testing.assert_array_equal(new["dense/1"], params["dense/1"])
    np.testing.assert_allclose(new["dense/0"], params["dense/0"] + 1, rtol=1e-6)
    assert set(ctrl.variables) == {"dense/0"}


def test_a_schedule_without_initial_learning_rate_starts_from_the_optimizers() -> None:
    ctrl = controller(
        optimizer_args={"path": "keras.optimizers.Adam"},  # Keras's default: 0.001
        lr_scheduler_args={"path": "keras.optimizers.schedules.CosineDecay", "args": {}},
    )
    assert ctrl.lr_scheduler_args is not None
    assert ctrl.lr_scheduler_args["args"] == {
        "decay_steps": 2,
        "initial_learning_rate": pytest.approx(0.001),
    }
    assert float(ctrl.optimizer.learning_rate) == pytest.approx(0.001)


def run_job(tmp_path: Path, **kwargs: Any) -> Path:
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    recipe = FedOptRecipe(min_clients=2, num_rounds=2, train_script=CLIENT, **kwargs)
    result = recipe.execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    return Path(result.get_result())


def test_fedopt_recipe_runs_with_nvflares_defaults(tmp_path: Path) -> None:
    model = bn_model()
    initial = model_params(model)
    result = run_job(tmp_path, model=model)
    saved = bn_model()
    saved.load_weights(str(result / "server" / "models" / "global_model.weights.h5"))
    out = model_params(saved)
    # site-k sends the global model + k weighted by k: the average is the global + 5/3.
    # SGD(1.0, momentum 0.6) with CosineDecay(1.0, decay_steps=2, alpha=0.9): round 0 moves
    # 5/3 at lr 1, round 1 moves 0.6 * 5/3 + 0.95 * 5/3; 4.25 in all (FedAvg: 10/3)
    ref = {k: keras.Variable(v) for k, v in initial.items() if k in ("dense/0", "dense/1")}
    ref.update({k: keras.Variable(v) for k, v in initial.items() if k in ("bn/0", "bn/1")})
    opt = keras.optimizers.SGD(
        learning_rate=keras.optimizers.schedules.CosineDecay(1.0, 2, alpha=0.9), momentum=0.6
    )
    values = dict(initial)
    for _ in range(2):
        average = {
            k: ((v + 1) * np.float32(1) + (v + 2) * np.float32(2)) / np.float32(3)
            for k, v in values.items()
        }
        opt.apply_gradients(
            [(keras.ops.convert_to_tensor(values[k] - average[k]), var) for k, var in ref.items()]
        )
        values = {**average, **{k: var.numpy() for k, var in ref.items()}}
    for key in ref:
        np.testing.assert_allclose(out[key], values[key], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out[key], initial[key] + 4.25, rtol=1e-5, atol=1e-5)
    for key in ("bn/2", "bn/3"):  # non-trainable: FedAvg's average, 10/3 in two rounds
        np.testing.assert_allclose(out[key], initial[key] + 10 / 3, rtol=1e-5)


def test_recipe_writes_the_optimizer_and_schedule_in_full(tmp_path: Path) -> None:
    recipe = FedOptRecipe(min_clients=2, num_rounds=7, model=bn_model(), train_script=CLIENT)
    recipe.export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["name"] == "fedopt"
    assert job["meta"] == {"recipe": "FedOptRecipe", "framework": "tensorflow"}
    workflow = job["workflows"][0]
    assert workflow["target"] == "ember_tf.controllers.fedopt:FedOptController"
    args = workflow["args"]
    assert args["optimizer_args"] == SGD
    assert args["lr_scheduler_args"] == {  # NVFlare's default, decaying over num_rounds
        "path": "keras.optimizers.schedules.CosineDecay",
        "args": {"alpha": 0.9, "decay_steps": 7, "initial_learning_rate": 1.0},
    }
    # NVFlare's own spelling: tensorflow.keras paths, config_type, decay_steps None
    nvflare = FedOptRecipe(
        min_clients=2,
        num_rounds=5,
        model=bn_model(),
        train_script=CLIENT,
        optimizer_args={
            "path": "tensorflow.keras.optimizers.SGD",
            "args": {"learning_rate": 0.5, "momentum": 0.9},
            "config_type": "dict",
        },
        lr_scheduler_args={
            "path": "tensorflow.keras.optimizers.schedules.CosineDecay",
            "args": {"initial_learning_rate": 0.5, "decay_steps": None, "alpha": 0.1},
            "config_type": "dict",
        },
    )
    nvflare.export(str(tmp_path / "job2"))
    args = json.loads((tmp_path / "job2" / "job.json").read_text())["workflows"][0]["args"]
    assert args["optimizer_args"]["path"] == "tensorflow.keras.optimizers.SGD"
    assert args["lr_scheduler_args"]["args"] == {
        "initial_learning_rate": 0.5,
        "decay_steps": 5,
        "alpha": 0.1,
    }
    ctrl = FedOptController(**args)  # the tensorflow.keras names resolve on the server
    assert isinstance(ctrl.optimizer, keras.optimizers.SGD)
    assert float(ctrl.optimizer.learning_rate) == pytest.approx(0.5)
    fixed = FedOptRecipe(
        min_clients=2,
        model=bn_model(),
        train_script=CLIENT,
        optimizer_args={"path": "keras.optimizers.Adam", "args": {"learning_rate": 0.1}},
        lr_scheduler_args=None,
    )
    fixed.export(str(tmp_path / "job3"))
    args = json.loads((tmp_path / "job3" / "job.json").read_text())["workflows"][0]["args"]
    assert args["optimizer_args"] == {
        "path": "keras.optimizers.Adam",
        "args": {"learning_rate": 0.1},
    }
    assert args["lr_scheduler_args"] is None


@pytest.mark.parametrize(
    ("keyword", "value", "match"),
    [
        ("optimizer_args", "keras.optimizers.SGD", "got str"),
        ("optimizer_args", {"path": "SGD", "args": {}}, "'path' must be a dotted name"),
        ("optimizer_args", {"args": {"learning_rate": 1.0}}, "'path' must be a dotted name"),
        ("optimizer_args", {"path": "keras.optimizers.SGD", "args": [1.0]}, "'args' must be"),
        ("optimizer_args", {"path": "keras.optimizers.SGD", "lr": 1.0}, r"unexpected keys"),
        ("lr_scheduler_args", {"path": "keras.optimizers.schedules.X", "args": 3}, "'args'"),
        ("lr_scheduler_args", {"path": "keras.optimizers.SGD", "config_type": "x"}, "config"),
    ],
)
def test_recipe_refuses_malformed_optimizer_args(keyword: str, value: Any, match: str) -> None:
    with pytest.raises(RecipeArgumentError, match=f"^{keyword}") as info:
        FedOptRecipe(min_clients=2, model=bn_model(), train_script=CLIENT, **{keyword: value})
    assert info.match(match)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"optimizer_args": {"path": "keras.optimizers.NoSuchOptimizer"}},
            r"^optimizer_args: cannot load 'keras\.optimizers\.NoSuchOptimizer'",
        ),
        (
            {"optimizer_args": {"path": "keras.optimizers.SGD", "args": {"lr": 1.0}}},
            r"^optimizer_args: cannot build SGD\(\*\*\{'lr': 1\.0\}\)",
        ),
        (
            {"optimizer_args": {"path": "keras.layers.Dense", "args": {"units": 2}}},
            "built a Dense, not a keras.optimizers.Optimizer",
        ),
        (
            {"lr_scheduler_args": {"path": "keras.optimizers.SGD"}},
            "^lr_scheduler_args: keras.optimizers.SGD built a SGD, not a keras.optimizers.sched",
        ),
        ({"optimizer_args": "SGD"}, "^optimizer_args must be"),
    ],
    ids=["unknown", "bad-argument", "not-an-optimizer", "not-a-schedule", "malformed"],
)
def test_bad_optimizer_args_fail_before_the_first_round(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(JobError, match=match):
        controller(**kwargs)


def test_recipe_classes_load_without_tensorflow() -> None:
    code = (
        "import sys\n"
        "import ember_tf.recipes as r\n"
        "r.FedOptRecipe, r.FedProxRecipe, r.ScaffoldRecipe\n"
        "import ember_tf.controllers.fedopt\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_recipe_signature_is_its_own_then_fedavgs() -> None:
    params = [p["name"] for p in describe_parameters(FedOptRecipe)]
    assert params[:4] == ["name", "optimizer_args", "lr_scheduler_args", "input_shape"]
    assert {"min_clients", "model", "train_script", "params_transfer_type"} <= set(params)
    defaults = {p["name"]: p.get("default") for p in describe_parameters(FedOptRecipe)}
    assert defaults["name"] == "fedopt"
    assert defaults["framework"] == "tensorflow"
