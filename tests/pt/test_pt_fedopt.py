"""FedOpt: the server's step equals torch's own optimizer step on the averaged update."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pt_tiny import TinyNet
from safetensors.numpy import load_file

from ember import SimEnv
from ember.common.model import ParamsType
from ember.recipes.validation import RecipeArgumentError
from ember.runtime.aggregation import WeightedAverage
from ember.runtime.errors import JobError
from ember_pt.controllers.fedopt import FedOptController
from ember_pt.recipes import FedOptRecipe

SCRIPTS = Path(__file__).parent / "scripts"
PERSISTOR = {"target": "ember_pt.persistor:TorchPersistor", "args": {}}
COSINE = {
    "path": "torch.optim.lr_scheduler.CosineAnnealingLR",
    "args": {"T_max": 2, "eta_min": 0.9},
}


def controller(**kwargs: Any) -> FedOptController:
    return FedOptController(num_rounds=2, min_clients=2, persistor=PERSISTOR, **kwargs)


def initial_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b": rng.standard_normal(2).astype(np.float32),
        "n": np.array(7, dtype=np.int64),  # an integer counter (BatchNorm's num_batches_tracked)
    }


@pytest.mark.parametrize(
    ("optimizer", "scheduler"),
    [
        ({"path": "torch.optim.SGD", "args": {"lr": 1.0, "momentum": 0.6}}, COSINE),
        ({"path": "torch.optim.Adam", "args": {"lr": 0.05}}, None),
    ],
    ids=["sgd-momentum-cosine", "adam"],
)
@pytest.mark.parametrize("transfer", ["FULL", "DIFF"])
def test_server_step_equals_torchs_optimizer_step(
    optimizer: dict[str, Any], scheduler: dict[str, Any] | None, transfer: str
) -> None:
    ctrl = controller(
        params_transfer_type=transfer, optimizer_args=optimizer, lr_scheduler_args=scheduler
    )
    rng = np.random.default_rng(1)
    params = initial_model()
    # the reference: torch's optimizer over tensors of the global model's float entries
    ref = {k: torch.tensor(params[k]) for k in ("w", "b")}
    ref_opt = getattr(torch.optim, optimizer["path"].rsplit(".", 1)[1])(
        list(ref.values()), **optimizer["args"]
    )
    ref_sched = (
        None
        if scheduler is None
        else torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, **scheduler["args"])
    )
    n = 7.0
    for _ in range(2):
        kept = ctrl.kept_for_update(params)
        before = {k: v.copy() for k, v in params.items()}
        average = WeightedAverage()
        sent = {}
        for site, weight in (("site-1", 1.0), ("site-2", 3.0)):
            update = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in ref.items()}
            sent[site] = update
            counter = np.array(int(n) + (1 if site == "site-1" else 5), dtype=np.int64)
            average.add(site, {**update, "n": counter}, ParamsType(transfer), weight)
        mean = {k: (sent["site-1"][k] * 1 + sent["site-2"][k] * 3) / 4 for k in ref}
        params = ctrl.next_global(kept, average)

        for key, tensor in ref.items():  # the pseudo-gradient: global - averaged global
            tensor.grad = torch.from_numpy(
                -mean[key] if transfer == "DIFF" else before[key] - mean[key]
            )
        ref_opt.step()
        if ref_sched is not None:
            ref_sched.step()
        for key, tensor in ref.items():
            assert params[key].dtype == np.float32
            np.testing.assert_allclose(params[key], tensor.numpy(), rtol=1e-5, atol=1e-6)
        # the integer counter is not stepped: FedAvg's average (or the DIFF added) replaces it
        counter_avg = (int(n) + 1) * 0.25 + (int(n) + 5) * 0.75
        n = n + counter_avg if transfer == "DIFF" else counter_avg
        assert float(params["n"]) == pytest.approx(n)
        for key, value in before.items():  # the round's global model is left as it was
            np.testing.assert_array_equal(kept[key], value)
    # momentum / Adam's moments persisted across the two rounds: one state per tensor
    assert ctrl.optimizer is not None
    assert len(ctrl.optimizer.state) == 2
    expected_lr = ref_opt.param_groups[0]["lr"]
    assert ctrl.optimizer.param_groups[0]["lr"] == pytest.approx(expected_lr)
    if scheduler is not None:
        assert expected_lr == pytest.approx(0.9)  # cosine from 1.0 reaches eta_min at T_max


def test_excluded_entries_keep_their_value_and_are_not_stepped() -> None:
    ctrl = controller(exclude_vars="^b$", lr_scheduler_args=None)
    params = initial_model()
    kept = ctrl.kept_for_update(params)
    average = WeightedAverage("^b$")
    update = {k: v + 1 for k, v in params.items()}
    average.add("site-1", update, ParamsType.FULL, 1.0)
    new = ctrl.next_global(kept, average)
    np.testing.assert_array_equal(new["b"], params["b"])
    # first step of SGD(lr=1, momentum=0.6): the momentum buffer is the gradient (-1)
    np.testing.assert_allclose(new["w"], params["w"] + 1, rtol=1e-6)
    assert ctrl.optimizer is not None
    assert [p.shape for p in ctrl.optimizer.param_groups[0]["params"]] == [(3, 4)]


def test_a_server_holding_tensors_gets_tensors_back() -> None:
    ctrl = controller(server_expected_format="pytorch", lr_scheduler_args=None)
    params = {k: torch.from_numpy(v) for k, v in initial_model().items()}
    kept = ctrl.kept_for_update(params)
    average = WeightedAverage()
    average.add("site-1", {"w": params["w"].numpy() - 2}, ParamsType.FULL, 1.0)
    new = ctrl.next_global(kept, average)
    assert isinstance(new["w"], torch.Tensor)
    torch.testing.assert_close(new["w"], params["w"] - 2)  # SGD(lr=1), first step
    assert new["b"].data_ptr() == params["b"].data_ptr()  # not averaged: kept, not copied


def test_fedopt_recipe_runs_to_completion(tmp_path: Path) -> None:
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    recipe = FedOptRecipe(
        name="pt-fedopt",
        min_clients=2,
        num_rounds=2,
        model={"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        train_script=str(SCRIPTS / "pt_add_client.py"),
    )
    result = recipe.execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    saved = load_file(
        str(Path(result.get_result()) / "server" / "models" / "global_model.safetensors")
    )
    # site-k sends the global model + k weighted by k: the average is global + 5/3, so the
    # pseudo-gradient is -5/3 each round; the defaults step it with SGD(lr=1, momentum=0.6)
    # and CosineAnnealingLR(T_max=2, eta_min=0.9)
    initial = TinyNet(3).state_dict()
    ref = {k: v.clone() for k, v in initial.items()}
    opt = torch.optim.SGD(list(ref.values()), lr=1.0, momentum=0.6)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2, eta_min=0.9)
    for _ in range(2):
        for tensor in ref.values():
            tensor.grad = torch.full_like(tensor, -5 / 3)
        opt.step()
        sched.step()
    assert set(saved) == set(initial)
    for key, tensor in ref.items():
        np.testing.assert_allclose(saved[key], tensor.numpy(), rtol=1e-5)
        # by hand: 5/3 * 1.0, then 0.95 * (0.6 + 1) * 5/3; FedAvg would move 10/3
        np.testing.assert_allclose(saved[key], initial[key].numpy() + 4.2, rtol=1e-5)


def test_recipe_writes_the_optimizer_and_scheduler_in_full(tmp_path: Path) -> None:
    recipe = FedOptRecipe(
        min_clients=2,
        num_rounds=7,
        model=TinyNet(3),
        train_script=str(SCRIPTS / "pt_add_client.py"),
    )
    recipe.export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    workflow = job["workflows"][0]
    assert workflow["target"] == "ember_pt.controllers.fedopt:FedOptController"
    args = workflow["args"]
    assert args["optimizer_args"] == {
        "path": "torch.optim.SGD",
        "args": {"lr": 1.0, "momentum": 0.6},
    }
    assert args["lr_scheduler_args"] == {
        "path": "torch.optim.lr_scheduler.CosineAnnealingLR",
        "args": {"T_max": 7, "eta_min": 0.9},
    }
    assert args["task_meta"]["model_class"]["path"] == "pt_tiny.TinyNet"
    no_scheduler = FedOptRecipe(
        min_clients=2,
        model=TinyNet(3),
        train_script=str(SCRIPTS / "pt_add_client.py"),
        optimizer_args={"path": "torch.optim.Adam", "args": {"lr": 0.1}, "config_type": "dict"},
        lr_scheduler_args=None,
    )
    no_scheduler.export(str(tmp_path / "job2"))
    args = json.loads((tmp_path / "job2" / "job.json").read_text())["workflows"][0]["args"]
    assert args["optimizer_args"] == {"path": "torch.optim.Adam", "args": {"lr": 0.1}}
    assert args["lr_scheduler_args"] is None


@pytest.mark.parametrize(
    ("keyword", "value", "match"),
    [
        ("optimizer_args", "torch.optim.SGD", "got str"),
        ("optimizer_args", {"path": "SGD", "args": {}}, "'path' must be a dotted name"),
        ("optimizer_args", {"args": {"lr": 1.0}}, "'path' must be a dotted name"),
        ("optimizer_args", {"path": "torch.optim.SGD", "args": [1.0]}, "'args' must be a dict"),
        ("optimizer_args", {"path": "torch.optim.SGD", "lr": 1.0}, r"unexpected keys \['lr'\]"),
        ("lr_scheduler_args", {"path": "torch.optim.lr_scheduler.StepLR", "args": 3}, "'args'"),
        ("lr_scheduler_args", {"path": "torch.optim.SGD", "config_type": "x"}, "config_type"),
    ],
)
def test_recipe_refuses_malformed_optimizer_args(keyword: str, value: Any, match: str) -> None:
    with pytest.raises(RecipeArgumentError, match=f"^{keyword}") as info:
        FedOptRecipe(
            min_clients=2,
            model=TinyNet(3),
            train_script=str(SCRIPTS / "pt_add_client.py"),
            **{keyword: value},
        )
    assert info.match(match)


def test_an_unknown_optimizer_fails_before_the_first_round() -> None:
    with pytest.raises(JobError, match=r"cannot load 'torch\.optim\.NoSuchOptimizer'"):
        controller(optimizer_args={"path": "torch.optim.NoSuchOptimizer", "args": {}})


def test_recipe_classes_load_without_torch() -> None:
    code = (
        "import sys\n"
        "import ember_pt.recipes as r\n"
        "r.FedProxRecipe, r.FedOptRecipe\n"
        "import ember_pt.controllers.fedopt\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"
