"""SCAFFOLD: the client helper against hand computations, and pytorch-scaffold jobs in SimEnv."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pt_scaffold_net import ScaffoldNet
from safetensors.numpy import load_file
from torch import nn

from ember import SimEnv
from ember.cli.recipe_cmd import describe_parameters
from ember_pt.recipes import ScaffoldRecipe
from ember_pt.scaffold import SCAFFOLD_C_DIFF, SCAFFOLD_C_GLOBAL, PTScaffoldHelper

SCRIPTS = Path(__file__).parent / "scripts"
SITES = ("site-1", "site-2")


def linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    net = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        net.weight.copy_(torch.tensor(weight))
        net.bias.copy_(torch.tensor(bias))
    return net


def controls(weight: list[list[float]], bias: list[float]) -> dict[str, torch.Tensor]:
    return {"weight": torch.tensor(weight), "bias": torch.tensor(bias)}


def as_numpy(net: nn.Module) -> dict[str, np.ndarray[Any, Any]]:
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


# -- the helper -----------------------------------------------------------------------------
def test_model_update_subtracts_lr_times_the_control_difference() -> None:
    net = linear([[1.0, 2.0]], [3.0])
    helper = PTScaffoldHelper()
    helper.init(net)
    c_global = controls([[1.0, -2.0]], [0.5])
    c_local = controls([[0.5, 0.5]], [1.5])
    helper.model_update(net, 0.1, c_global, c_local)
    helper.model_update(net, 0.1, c_global, c_local)
    # w - 2 * 0.1 * (c - c_i): [1 - 0.2*0.5, 2 - 0.2*(-2.5)], 3 - 0.2*(-1)
    np.testing.assert_allclose(net.weight.detach().numpy(), [[0.9, 2.5]], rtol=1e-6)
    np.testing.assert_allclose(net.bias.detach().numpy(), [3.2], rtol=1e-6)
    assert helper.cnt == 2
    assert helper.get_params()[0]["weight"].abs().sum() == 0  # init's zeros, count reset
    assert helper.cnt == 0


def test_terms_update_with_constant_gradients_gives_the_gradient() -> None:
    """Option II with a constant gradient g: y_K = x - K*lr*(g + c - c_i), so
    c_i+ = c_i - c + (x - y_K) / (K*lr) = g exactly, whatever c and c_i were."""
    net = linear([[1.0, 2.0]], [3.0])
    start = as_numpy(net)
    g = controls([[0.25, -1.0]], [2.0])
    helper = PTScaffoldHelper()
    helper.init(net)
    helper.load_global_controls({"weight": np.array([[1.0, -2.0]]), "bias": np.array([0.5])})
    helper.c_local = controls([[0.5, 0.5]], [1.5])
    c_global, c_local = helper.get_params()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        (net.weight * g["weight"]).sum().backward()
        (net.bias * g["bias"]).sum().backward()
        optimizer.step()
        helper.model_update(net, 0.5, c_global, c_local)
    helper.terms_update(net, 0.5, c_global, c_local, start)
    for name in ("weight", "bias"):
        np.testing.assert_allclose(helper.c_local[name].numpy(), g[name].numpy(), rtol=1e-6)
        np.testing.assert_allclose(
            helper.get_delta_controls()[name], (g[name] - c_local[name]).numpy(), rtol=1e-6
        )
    assert isinstance(helper.get_delta_controls()["weight"], np.ndarray)


def test_terms_update_matches_a_numpy_loop_on_a_quadratic_loss() -> None:
    """loss = 0.5 * ||w - t||^2 (gradient w - t), K = 4 steps of SGD + correction."""
    lr, steps = 0.3, 4
    w0, t = np.array([[1.0, -2.0, 0.5]]), np.array([[0.0, 1.0, 2.0]])
    c, ci = np.array([[0.2, -0.1, 0.3]]), np.array([[-0.4, 0.1, 0.0]])
    net = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(w0))
    helper = PTScaffoldHelper()
    helper.init(net)
    helper.load_global_controls({"weight": c})
    helper.c_local = {"weight": torch.tensor(ci, dtype=torch.float32)}
    c_global, c_local = helper.get_params()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    target = torch.tensor(t, dtype=torch.float32)
    global_net = nn.Linear(3, 1, bias=False)
    global_net.load_state_dict(net.state_dict())
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * ((net.weight - target) ** 2).sum()).backward()
        optimizer.step()
        helper.model_update(net, lr, c_global, c_local)
    helper.terms_update(net, lr, c_global, c_local, global_net)  # an nn.Module as x

    y = w0.copy()
    for _ in range(steps):
        y = y - lr * (y - t)
        y = y - lr * (c - ci)
    c_new = ci - c + (w0 - y) / (steps * lr)
    np.testing.assert_allclose(net.weight.detach().numpy(), y, rtol=1e-5)
    np.testing.assert_allclose(helper.c_local["weight"].numpy(), c_new, rtol=1e-5)
    np.testing.assert_allclose(helper.get_delta_controls()["weight"], c_new - ci, rtol=1e-5)


def test_round_api_reads_and_writes_the_task_meta() -> None:
    net = ScaffoldNet()
    helper = PTScaffoldHelper()
    c_global, c_local = helper.start_round(net, {})  # round 0: no c yet means zeros
    names = {"fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias"}
    assert set(c_global) == set(c_local) == names  # parameters only, not the bn buffers
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    net(x).sum().backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.1 * p.grad
    helper.step(net, 0.1)
    meta = helper.end_round(net, 0.1)
    diff = meta[SCAFFOLD_C_DIFF]
    assert set(diff) == names
    first = {k: v.copy() for k, v in diff.items()}
    for name, value in helper.c_local.items():  # c_i was 0: c_i+ is the delta
        np.testing.assert_array_equal(value.numpy(), first[name])
    # next round: the server's c (with buffer entries the helper ignores) and c_i carried over
    server_c = {
        name: np.full(tuple(v.shape), 0.5, np.float32) for name, v in net.state_dict().items()
    }
    c_global, c_local = helper.start_round(net, {SCAFFOLD_C_GLOBAL: server_c})
    assert float(c_global["fc2.bias"][0]) == 0.5
    np.testing.assert_array_equal(c_local["fc1.weight"].numpy(), first["fc1.weight"])
    with pytest.raises(ValueError, match=r"lack parameter 'fc1\.bias'"):
        helper.load_global_controls({"fc1.weight": server_c["fc1.weight"]})
    with pytest.raises(ValueError, match="at least one model_update"):
        helper.end_round(net, 0.1)


# -- jobs -----------------------------------------------------------------------------------
def run_job(
    tmp_path: Path, train_args: str = "", config: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    out = tmp_path / "out"
    out.mkdir()
    recipe = ScaffoldRecipe(
        min_clients=2,
        num_rounds=2,
        model={"path": "pt_scaffold_net.ScaffoldNet"},
        train_script=str(SCRIPTS / "pt_scaffold_client.py"),
        train_args=f"--out {out} {train_args}",
        key_metric=None,
        **kwargs,
    )
    for name, value in (config or {}).items():
        recipe.set_config(name, value)
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    return recipe.execute(env)


def sent(tmp_path: Path, site: str, rnd: int) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
    """What ``site``'s script received (c_global) and sent (c_diff, params) in round ``rnd``."""
    out: dict[str, dict[str, np.ndarray[Any, Any]]] = {"c_global": {}, "c_diff": {}, "params": {}}
    with np.load(tmp_path / "out" / f"{site}-r{rnd}.npz") as data:
        for key in data.files:
            part, name = key.split("/", 1)
            out[part][name] = data[key]
    return out


@pytest.mark.parametrize(
    ("external", "config", "train_args"),
    [
        (False, {}, ""),
        # every array streamed, pulled in chunks: the server gets lazy references
        (
            False,
            {"streaming.min_tensor_bytes": 1, "streaming.inprocess_direct": False},
            "--tensors",
        ),
        (True, {"streaming.min_tensor_bytes": 1}, ""),
    ],
    ids=["in-process", "in-process-streamed", "external-process-streamed"],
)
def test_server_control_variates_are_the_hand_computed_sums(
    tmp_path: Path, external: bool, config: dict[str, Any], train_args: str
) -> None:
    run = run_job(tmp_path, train_args, config, launch_external_process=external)
    assert run.get_status() == "FINISHED:COMPLETED", run.get_message()
    result = Path(run.get_result())
    records = {site: [sent(tmp_path, site, rnd) for rnd in (0, 1)] for site in SITES}
    state = {k: v.numpy() for k, v in ScaffoldNet().state_dict().items()}
    float_keys = {k for k, v in state.items() if np.issubdtype(v.dtype, np.floating)}
    assert "bn.running_mean" in float_keys
    assert "bn.num_batches_tracked" not in float_keys

    # round 0: zeros for every float entry of the model (buffers included)
    for site in SITES:
        received = records[site][0]["c_global"]
        assert set(received) == float_keys
        assert all(not v.any() for v in received.values())
    # c += (sum of the sites' c_diff) / N, N = 2 sites; float32 as on the server
    n = np.float32(2)
    c1 = {k: np.zeros_like(state[k]) for k in float_keys}
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
    assert not saved["bn.running_var"].any()  # no site sends controls for buffers
    assert np.abs(saved["fc1.weight"]).sum() > 0

    # the model: FedAvg's average weighted by each site's steps (K = 2 and 3)
    model = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    p1, p2 = records["site-1"][1]["params"], records["site-2"][1]["params"]
    for key in float_keys:
        expected = (p1[key] * np.float32(2) + p2[key] * np.float32(3)) / np.float32(5)
        np.testing.assert_allclose(model[key], expected, rtol=1e-5, atol=1e-6)


def test_a_site_without_c_diff_fails_the_job_naming_it(tmp_path: Path) -> None:
    run = run_job(tmp_path, "--no-diff site-2")
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    message = run.get_message()
    assert "site-2 sent nothing as meta['scaffold_c_diff']" in message
    assert "PTScaffoldHelper.end_round" in message


def test_recipe_runs_the_scaffold_controller(tmp_path: Path) -> None:
    recipe = ScaffoldRecipe(
        min_clients=2,
        model={"path": "pt_scaffold_net.ScaffoldNet"},
        train_script=str(SCRIPTS / "pt_scaffold_client.py"),
    )
    recipe.export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    assert job["name"] == "scaffold"
    assert job["meta"]["recipe"] == "ScaffoldRecipe"
    (workflow,) = job["workflows"]
    assert workflow["target"] == "ember.controllers:ScaffoldController"
    assert workflow["args"]["task_meta"] == {
        "model_class": {"path": "pt_scaffold_net.ScaffoldNet", "args": {}}
    }
    params = {p["name"]: p for p in describe_parameters(ScaffoldRecipe)}
    assert params["name"]["default"] == "scaffold"
    assert params["min_clients"]["required"]
    assert "initial_ckpt" in params
