"""KMeansFedAvgRecipe: initialisation from every site, exact aggregation of sums and counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sk_data import site_data
from sklearn.cluster import KMeans

from ember.client import FLModel
from ember_sklearn.client import SPEC_KEY, kmeans_step, load_model, model_spec
from ember_sklearn.kmeans import PHASE_KEY, cluster_sums, update_centers
from ember_sklearn.recipes import KMeansFedAvgRecipe
from support.sim import round_records, run_sim

SCRIPTS = Path(__file__).parent / "scripts"
COMPLETED = "FINISHED:COMPLETED"
SITES = ["site-1", "site-2", "site-3"]


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _recipe(**kwargs: Any) -> KMeansFedAvgRecipe:
    options: dict[str, Any] = {
        "name": "sk-kmeans",
        "min_clients": 3,
        "num_rounds": 2,
        "n_clusters": 3,
        "seed": 0,
        "train_script": str(SCRIPTS / "sk_kmeans_client.py"),
    }
    options.update(kwargs)
    return KMeansFedAvgRecipe(**options)


def test_update_rules_by_hand() -> None:
    centers = np.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]])
    sums = np.array([[2.0, 4.0], [33.0, 30.0], [0.0, 0.0]])
    counts = np.array([2.0, 3.0, 0.0])
    lloyd, lloyd_counts = update_centers(centers, np.zeros(3), sums, counts, minibatch=False)
    np.testing.assert_array_equal(lloyd, [[1.0, 2.0], [11.0, 10.0], [5.0, 5.0]])
    np.testing.assert_array_equal(lloyd_counts, counts)
    total = np.array([2.0, 1.0, 4.0])
    mini, mini_counts = update_centers(centers, total, sums, counts, minibatch=True)
    # centre += (sums - n * centre) / (total + n): learning rate n / (total + n)
    np.testing.assert_allclose(mini, [[0.5, 1.0], [10.75, 10.0], [5.0, 5.0]])
    np.testing.assert_array_equal(mini_counts, [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(centers[1], [10.0, 10.0])  # inputs are not modified


def test_cluster_sums_by_hand() -> None:
    x = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0], [10.0, 12.0]])
    params, inertia = cluster_sums(x, np.array([[0.0, 0.0], [10.0, 10.0], [50.0, 50.0]]))
    np.testing.assert_array_equal(params["sums"], [[1.0, 0.0], [19.0, 21.0], [0.0, 0.0]])
    np.testing.assert_array_equal(params["counts"], [2.0, 2.0, 0.0])
    assert inertia == pytest.approx(0 + 1 + 2 + 4)


@pytest.mark.parametrize("batch_size", [None, 20])
def test_federated_kmeans_matches_the_hand_computation(
    tmp_path: Path, batch_size: int | None
) -> None:
    recipe = _recipe(batch_size=batch_size)
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())

    # round 0: every site's own centres and counts; the server's k-means on their union
    init = [_npz(result / site / "sent_0.npz") for site in SITES]
    for site, sent in zip(SITES, init, strict=True):
        x, _ = site_data("iris", site, [0.5, 0.3, 0.2])
        assert sent["centers"].shape == (3, 4)
        assert sent["counts"].sum() == len(x)
    union = np.concatenate([s["centers"] for s in init])
    weights = np.concatenate([s["counts"] for s in init])
    expected = KMeans(n_clusters=3, n_init=10, random_state=0).fit(union, sample_weight=weights)
    for site in SITES:
        np.testing.assert_array_equal(
            _npz(result / site / "received_1.npz")["centers"], expected.cluster_centers_
        )

    # rounds 1 and 2: sums and counts added over the sites, then the update rule
    centers, total = expected.cluster_centers_, np.zeros(3)
    for rnd in (1, 2):
        sent = [_npz(result / site / f"sent_{rnd}.npz") for site in SITES]
        sums = sum(s["sums"] for s in sent)
        counts = sum(s["counts"] for s in sent)
        for site, s in zip(SITES, sent, strict=True):
            np.testing.assert_array_equal(
                _npz(result / site / f"received_{rnd}.npz")["centers"], centers
            )
            answer = json.loads((result / site / f"sent_{rnd}.json").read_text())
            assert answer["phase"] == "update"
            assert answer["weight"] == s["counts"].sum()
            if batch_size:
                assert s["counts"].sum() == batch_size
        if batch_size is None:
            assert counts.sum() == 150  # every iris point, once
            centers, total = sums / counts[:, None], counts
        else:
            total = total + counts
            centers = centers + (sums - counts[:, None] * centers) / total[:, None]
    params, spec = load_model(result / "server" / "models" / "global_model.npz")
    np.testing.assert_allclose(params["centers"], centers, rtol=1e-12)
    np.testing.assert_array_equal(params["counts"], total)
    assert spec == recipe.model_spec
    records = round_records(result)
    assert [r["round"] for r in records] == [0, 1, 2]
    assert records[0]["metrics"] == {"union_centers": 9.0}
    assert records[2]["metrics"]["n_samples"] == (150 if batch_size is None else 60)


def test_mini_batches_are_seeded_per_site_and_round() -> None:
    spec = {"algorithm": "kmeans", "estimator": "KMeans", "batch_size": 5, "seed": 3,
            "params": {"n_clusters": 2, "n_init": 1, "random_state": 3}}
    x = np.arange(40.0).reshape(20, 2)
    task = FLModel(params={"centers": np.array([[0.0, 0.0], [40.0, 40.0]])}, current_round=1,
                   meta={SPEC_KEY: spec, PHASE_KEY: "update"})
    first = kmeans_step(task, x, site="site-1")
    assert first.params is not None
    assert first.params["counts"].sum() == 5
    again = kmeans_step(task, x, site="site-1")
    other = kmeans_step(task, x, site="site-2")
    np.testing.assert_array_equal(first.params["sums"], again.params["sums"])
    assert not np.array_equal(first.params["sums"], other.params["sums"])
    assert model_spec(task) == spec


def test_subprocess_sites_give_the_same_model(tmp_path: Path) -> None:
    inproc = run_sim(_recipe(min_clients=2, num_rounds=1), tmp_path / "a")
    subproc = run_sim(
        _recipe(min_clients=2, num_rounds=1, launch_external_process=True), tmp_path / "b"
    )
    assert subproc.get_status() == COMPLETED, subproc.get_message()
    a, _ = load_model(Path(inproc.get_result()) / "server" / "models" / "global_model.npz")
    b, _ = load_model(Path(subproc.get_result()) / "server" / "models" / "global_model.npz")
    np.testing.assert_array_equal(a["centers"], b["centers"])
