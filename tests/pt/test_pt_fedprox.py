"""FedProx: the proximal loss against hand computations, the recipe's mu at the sites."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pt_tiny import TinyNet
from safetensors.numpy import load_file

from ember import SimEnv
from ember.client import FLModel
from ember.recipes.validation import RecipeArgumentError
from ember_pt.fedprox import PTFedProxLoss, fedprox_mu
from ember_pt.recipes import FedProxRecipe

SCRIPTS = Path(__file__).parent / "scripts"


def moved(net: TinyNet) -> TinyNet:
    """``net`` with every weight moved by a distinct, known amount."""
    with torch.no_grad():
        net.fc.weight.add_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
        net.fc.bias.add_(torch.tensor([2.0, -0.25]))
    return net


def test_loss_and_gradient_match_a_hand_computation() -> None:
    global_model = TinyNet(3)
    model = moved(TinyNet(3))
    # sum of squared moves: 1 + 4 + 0.25 + 0 + 9 + 1 + 4 + 0.0625 = 19.3125
    loss = PTFedProxLoss(mu=0.2)(model, global_model)
    assert loss.item() == pytest.approx(0.2 / 2 * 19.3125)
    loss.backward()
    # d/dw of mu/2 * ||w - w_g||^2 is mu * (w - w_g); nothing flows into the global model
    expected_w = 0.2 * torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    torch.testing.assert_close(model.fc.weight.grad, expected_w)
    torch.testing.assert_close(model.fc.bias.grad, 0.2 * torch.tensor([2.0, -0.25]))
    assert global_model.fc.weight.grad is None
    assert global_model.fc.bias.grad is None


def test_loss_accepts_the_global_state_dict_and_is_zero_at_the_global_model() -> None:
    model = moved(TinyNet(3))
    state = TinyNet(3).state_dict()
    assert PTFedProxLoss(1.0)(model, state).item() == pytest.approx(19.3125 / 2)
    assert PTFedProxLoss(5.0)(TinyNet(3), state).item() == 0.0
    assert PTFedProxLoss(0.0)(model, state).item() == 0.0
    with pytest.raises(KeyError, match=r"fc\.weight"):
        PTFedProxLoss()(model, {"fc.bias": state["fc.bias"]})


@pytest.mark.parametrize("mu", [-0.01, math.nan, math.inf, "0.1", True, None])
def test_loss_refuses_a_bad_mu(mu: Any) -> None:
    with pytest.raises(ValueError, match="mu must be a finite number >= 0"):
        PTFedProxLoss(mu)


def test_fedprox_mu_reads_the_task_meta() -> None:
    assert fedprox_mu(FLModel(meta={"fedprox_mu": 0.25})) == 0.25
    assert fedprox_mu(FLModel()) is None
    assert fedprox_mu(FLModel(), default=0.01) == 0.01
    with pytest.raises(ValueError, match="fedprox_mu"):
        fedprox_mu(FLModel(meta={"fedprox_mu": -1}))


def options(**kwargs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "pt-fedprox",
        "min_clients": 2,
        "num_rounds": 2,
        "model": {"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        "train_script": str(SCRIPTS / "pt_fedprox_client.py"),
    }
    return {**base, **kwargs}


def test_sites_train_with_the_recipes_mu(tmp_path: Path) -> None:
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    result = FedProxRecipe(**options(fedprox_mu=0.5)).execute(env)
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
    initial = {k: v.numpy() for k, v in TinyNet(3).state_dict().items()}
    saved = load_file(str(server / "models" / "global_model.safetensors"))
    assert set(saved) == set(initial)
    for key, value in initial.items():
        np.testing.assert_allclose(saved[key], value + 2 * 2.5, rtol=1e-6, atol=1e-6)


def test_mu_is_merged_into_the_task_meta(tmp_path: Path) -> None:
    FedProxRecipe(**options(fedprox_mu=0)).export(str(tmp_path / "job"))
    job = json.loads((tmp_path / "job" / "job.json").read_text())
    args = job["workflows"][0]["args"]
    assert args["task_meta"] == {
        "model_class": {"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        "fedprox_mu": 0.0,
    }
    assert job["meta"]["recipe"] == "FedProxRecipe"
    assert FedProxRecipe(**options()).fedprox_mu == 0.01  # the default


@pytest.mark.parametrize("mu", [-0.5, math.nan, "0.1", True, None, [0.1]])
def test_recipe_refuses_a_bad_fedprox_mu(mu: Any) -> None:
    with pytest.raises(RecipeArgumentError, match="fedprox_mu must be a finite number >= 0"):
        FedProxRecipe(**options(fedprox_mu=mu))
