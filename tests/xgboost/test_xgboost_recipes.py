"""Federated XGBoost: histogram-based training equals training on the pooled data; bagging
and cyclic equal a hand-run of the same rounds; failures end the job by name; nothing is
left running."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgb_test_loaders as loaders
from sklearn.metrics import roc_auc_score

import xgboost as xgb
from ember import SimEnv
from ember.recipes import RecipeArgumentError
from ember_xgboost import model as xgb_model
from ember_xgboost.recipes import XGBBaggingRecipe, XGBHorizontalRecipe, XGBVerticalRecipe
from ember_xgboost.site import tree_params, tree_round

COMPLETED = "FINISHED:COMPLETED"
PARAMS = {
    "max_depth": 3,
    "eta": 0.3,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "tree_method": "hist",
    "nthread": 1,
}


def sites(n: int, loader: Any) -> dict[str, dict[str, Any]]:
    return {f"site-{i + 1}": {"data_loader": loader} for i in range(n)}


def run_sim(recipe: Any, tmp_path: Path, n: int) -> Path:
    run = recipe.execute(SimEnv(num_clients=n, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == COMPLETED, run.get_message()
    return Path(run.get_result())


def predictions(model_file: Path, x: np.ndarray) -> np.ndarray:
    return np.asarray(xgb.Booster(model_file=str(model_file)).predict(xgb.DMatrix(x)))


def no_process_mentions(text: str) -> bool:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if text in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return False
            except OSError:
                continue
    return True


def server_port(result: Path) -> int:
    log = (result / "server" / "log.txt").read_text()
    line = next(line for line in log.splitlines() if "XGBoost federated server on" in line)
    return int(line.split("127.0.0.1:")[1].split()[0])


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_horizontal_training_gives_the_model_of_the_pooled_rows(tmp_path: Path) -> None:
    recipe = XGBHorizontalRecipe(
        name="xgb-h",
        min_clients=2,
        num_rounds=5,
        early_stopping_rounds=None,
        xgb_params=PARAMS,
        per_site_config=sites(2, loaders.Rows(num_sites=2)),
    )
    result = run_sim(recipe, tmp_path, 2)
    x, y, xv, yv = loaders.data()
    central = xgb.train(PARAMS, xgb.DMatrix(x, label=y), 5)
    federated = predictions(result / "server" / "xgboost_model.json", xv)
    np.testing.assert_allclose(federated, central.predict(xgb.DMatrix(xv)), atol=1e-6)
    assert roc_auc_score(yv, federated) == pytest.approx(
        roc_auc_score(yv, central.predict(xgb.DMatrix(xv))), abs=1e-6
    )
    rounds = [json.loads(line) for line in (result / "server" / "round_metrics.jsonl").open()]
    assert [r["round"] for r in rounds] == list(range(5))
    assert set(rounds[-1]["site_metrics"]) == {"site-1", "site-2"}
    assert rounds[-1]["metrics"]["valid_auc"] == pytest.approx(
        roc_auc_score(yv, federated), abs=1e-6
    )
    # the sites' processes and their tunnel endpoints are gone with the job
    assert no_process_mentions(str(result / "job" / "app"))
    assert not tunnel_links(tmp_path)


def tunnel_links(root: Path) -> list[Path]:
    """The sites' links to their tunnel sockets (``unix:<digits>`` in the site folder)."""
    return [p for p in root.rglob("*") if p.is_symlink() and p.name.isdigit()]


def test_xgboosts_own_federated_server_gives_the_bits_of_the_server_jobs_collective(
    tmp_path: Path,
) -> None:
    models = {}
    for collective in ("ember", "xgboost"):
        recipe = XGBHorizontalRecipe(
            name=f"xgb-{collective}",
            min_clients=2,
            num_rounds=3,
            early_stopping_rounds=None,
            xgb_params=PARAMS,
            per_site_config=sites(2, loaders.Rows(num_sites=2)),
            collective=collective,
        )
        result = run_sim(recipe, tmp_path / collective, 2)
        models[collective] = (result / "server" / "xgboost_model.json").read_bytes()
    assert models["ember"] == models["xgboost"]
    # XGBoost's federated server is stopped with the job, its port closed
    assert refused(server_port(result))
    assert no_process_mentions(str(result / "server" / ".xgboost_tls"))


def test_vertical_training_gives_the_model_of_the_pooled_columns(tmp_path: Path) -> None:
    recipe = XGBVerticalRecipe(
        name="xgb-v",
        min_clients=2,
        num_rounds=4,
        label_owner="site-1",
        early_stopping_rounds=None,
        xgb_params=PARAMS,
        per_site_config=sites(2, loaders.Columns(num_sites=2)),
    )
    result = run_sim(recipe, tmp_path, 2)
    x, y, xv, yv = loaders.data()
    central = xgb.train(PARAMS, xgb.DMatrix(x, label=y), 4)
    federated = predictions(result / "server" / "test.model.json", xv)
    np.testing.assert_allclose(federated, central.predict(xgb.DMatrix(xv)), atol=1e-6)
    assert roc_auc_score(yv, federated) == pytest.approx(
        roc_auc_score(yv, central.predict(xgb.DMatrix(xv))), abs=1e-6
    )


def hand_run(mode: str, n: int, rounds: int, train_args: dict[str, Any]) -> bytes:
    """The rounds of tree-based training done here, site by site, without Ember."""
    x, y, _, _ = loaders.data()
    parts = np.array_split(np.arange(len(y)), n)
    matrices = [xgb.DMatrix(x[rows], label=y[rows]) for rows in parts]
    params = tree_params(train_args, mode, 1.0)
    model: bytes | None = None
    for _ in range(rounds):
        if mode == "bagging":
            document = json.loads(model) if model is not None else None
            for train in matrices:
                sent, _ = tree_round(train, params, mode, model)
                document = xgb_model.append_trees(document, json.loads(sent))
            assert document is not None
            model = xgb_model.dumps(document)
        else:
            for train in matrices:
                model, _ = tree_round(train, params, mode, model)
    assert model is not None
    return model


@pytest.mark.parametrize("mode", ["bagging", "cyclic"])
def test_tree_based_training_equals_a_hand_run_of_the_same_rounds(
    tmp_path: Path, mode: str
) -> None:
    recipe = XGBBaggingRecipe(
        name=f"xgb-{mode}",
        min_clients=3,
        training_mode=mode,
        num_rounds=3,
        num_local_parallel_tree=2 if mode == "bagging" else 1,
        max_depth=3,
        nthread=1,
        per_site_config=sites(3, loaders.Rows(num_sites=3)),
    )
    result = run_sim(recipe, tmp_path, 3)
    _, _, xv, _ = loaders.data()
    federated = predictions(result / "server" / "xgboost_model.json", xv)
    controller_args = recipe.job.workflows[0]["args"]["train_args"]
    expected = xgb.Booster(model_file=bytearray(hand_run(mode, 3, 3, controller_args)))
    np.testing.assert_array_equal(federated, expected.predict(xgb.DMatrix(xv)))
    trees = xgb.Booster(model_file=str(result / "server" / "xgboost_model.json"))
    per_round = 3 * 2 if mode == "bagging" else 3
    assert len(trees.get_dump()) == 3 * per_round
    rounds = [json.loads(line) for line in (result / "server" / "round_metrics.jsonl").open()]
    assert all(set(r["site_metrics"]) == {"site-1", "site-2", "site-3"} for r in rounds)


def test_bagging_appends_each_sites_trees_so_margins_add_up() -> None:
    x, y, xv, _ = loaders.data()
    params = {**PARAMS, "base_score": 0.5}
    a = xgb.train(params, xgb.DMatrix(x[:200], label=y[:200]), 1)
    b = xgb.train(params, xgb.DMatrix(x[200:], label=y[200:]), 1)
    joined = xgb_model.append_trees(
        json.loads(bytes(a.save_raw("json"))), json.loads(bytes(b.save_raw("json")))
    )
    both = xgb.Booster(model_file=bytearray(xgb_model.dumps(joined)))
    margin = lambda m: m.predict(xgb.DMatrix(xv), output_margin=True)  # noqa: E731
    np.testing.assert_allclose(margin(both), margin(a) + margin(b), atol=1e-5)


def test_a_site_dying_mid_training_ends_the_job_with_its_name(tmp_path: Path) -> None:
    recipe = XGBHorizontalRecipe(
        name="xgb-dies",
        min_clients=2,
        num_rounds=50,
        xgb_params=PARAMS,
        per_site_config=sites(2, loaders.DiesAt(num_sites=2, dies="site-2")),
    )
    run = recipe.execute(SimEnv(num_clients=2, workspace_root=str(tmp_path), progress=False))
    assert run.get_status() == "FINISHED:EXECUTION_EXCEPTION"
    assert "site-2" in run.get_message()
    assert "exit" in run.get_message() or "code 3" in run.get_message()
    result = Path(run.get_result())
    assert no_process_mentions(str(result / "job" / "app"))
    assert not tunnel_links(tmp_path)


def test_recipes_refuse_bad_arguments_naming_the_fix() -> None:
    good = sites(2, loaders.Rows(num_sites=2))
    with pytest.raises(RecipeArgumentError, match="per_site_config is required"):
        XGBHorizontalRecipe(name="x", min_clients=2, num_rounds=1)
    with pytest.raises(RecipeArgumentError, match="min_clients=3 but per_site_config"):
        XGBHorizontalRecipe(name="x", min_clients=3, num_rounds=1, per_site_config=good)
    with pytest.raises(RecipeArgumentError, match='collective must be "ember"'):
        XGBHorizontalRecipe(
            name="x", min_clients=2, num_rounds=1, collective="nccl", per_site_config=good
        )
    with pytest.raises(RecipeArgumentError, match="homomorphic encryption"):
        XGBHorizontalRecipe(
            name="x", min_clients=2, num_rounds=1, secure=True, per_site_config=good
        )
    with pytest.raises(RecipeArgumentError, match="label_owner 'site-9' must be one of"):
        XGBVerticalRecipe(
            name="x", min_clients=2, num_rounds=1, label_owner="site-9", per_site_config=good
        )
    with pytest.raises(RecipeArgumentError, match="must have rank 0"):
        XGBVerticalRecipe(
            name="x",
            min_clients=2,
            num_rounds=1,
            label_owner="site-1",
            client_ranks={"site-1": 1, "site-2": 0},
            per_site_config=good,
        )
    with pytest.raises(RecipeArgumentError, match="unique and consecutive"):
        XGBHorizontalRecipe(
            name="x",
            min_clients=2,
            num_rounds=1,
            client_ranks={"site-1": 0, "site-2": 5},
            per_site_config=good,
        )
    with pytest.raises(RecipeArgumentError, match="must include 'data_loader'"):
        XGBBaggingRecipe(name="x", min_clients=1, per_site_config={"site-1": {}})
    with pytest.raises(RecipeArgumentError, match="training_mode"):
        XGBBaggingRecipe(name="x", min_clients=2, training_mode="boost", per_site_config=good)
    with pytest.raises(RecipeArgumentError, match="XGBDataLoader"):
        XGBBaggingRecipe(name="x", min_clients=1, per_site_config={"site-1": {"data_loader": 3}})


def test_an_xgboost_build_without_the_federated_communicator_is_named_at_job_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ember_xgboost.support import XGBoostBuildError, require_federated

    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_FEDERATED": False})
    with pytest.raises(XGBoostBuildError, match=r"without the federated communicator.*3\.2\.0"):
        require_federated()
