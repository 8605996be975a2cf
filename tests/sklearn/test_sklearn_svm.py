"""SVMFedAvgRecipe: the server fits on the union of the sites' support vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ember_sklearn.client import load_model, svm_decision_function, svm_predict
from ember_sklearn.recipes import SVMFedAvgRecipe
from ember_sklearn.svm import fit_global_svm, resolve_gamma
from support.sim import round_records, run_sim

SCRIPTS = Path(__file__).parent / "scripts"
COMPLETED = "FINISHED:COMPLETED"
SITES = ["site-1", "site-2", "site-3"]


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("loader", [load_breast_cancer, load_iris])
@pytest.mark.parametrize("kernel", ["rbf", "poly", "sigmoid", "linear"])
def test_saved_params_predict_exactly_as_the_fitted_svc(loader: object, kernel: str) -> None:
    x, y = loader(return_X_y=True)  # type: ignore[operator]
    x = StandardScaler().fit_transform(x)
    spec = {"algorithm": "svm", "estimator": "SVC",
            "params": {"kernel": kernel, "C": 1.0, "gamma": "scale", "degree": 3, "coef0": 0.5}}
    params, global_spec, svc = fit_global_svm(x, y, spec)
    assert global_spec["params"]["gamma"] == pytest.approx(1 / (x.shape[1] * x.var()))
    np.testing.assert_array_equal(svm_predict(params, global_spec, x), svc.predict(x))
    svc.decision_function_shape = "ovo"
    np.testing.assert_allclose(
        svm_decision_function(params, global_spec, x), svc.decision_function(x), atol=1e-9
    )


def test_global_svm_is_fitted_on_the_union_of_the_sites_support_vectors(tmp_path: Path) -> None:
    recipe = SVMFedAvgRecipe(
        name="sk-svm",
        min_clients=3,
        kernel="rbf",
        C=2.0,
        train_script=str(SCRIPTS / "sk_svm_client.py"),
    )
    run = run_sim(recipe, tmp_path, num_clients=3)
    assert run.get_status() == COMPLETED, run.get_message()
    result = Path(run.get_result())

    sent = [_npz(result / site / "sent.npz") for site in SITES]
    union_x = np.concatenate([s["support_x"] for s in sent])
    union_y = np.concatenate([s["support_y"] for s in sent])
    params, spec = load_model(result / "server" / "models" / "global_model.npz")

    # the server fitted on exactly the union: gamma='scale' was resolved on it, and an SVC
    # fitted on the union with the recipe's hyper-parameters gives the saved model
    assert spec["params"]["gamma"] == resolve_gamma("scale", union_x)
    assert {k: v for k, v in spec["params"].items() if k != "gamma"} == {
        k: v for k, v in recipe.model_spec["params"].items() if k != "gamma"
    }
    reference = SVC(kernel="rbf", C=2.0, gamma=spec["params"]["gamma"]).fit(union_x, union_y)
    np.testing.assert_array_equal(params["support_vectors"], reference.support_vectors_)
    np.testing.assert_array_equal(params["support_labels"], union_y[reference.support_])
    np.testing.assert_allclose(params["dual_coef"], reference.dual_coef_, rtol=1e-12)
    np.testing.assert_allclose(params["intercept"], reference.intercept_, rtol=1e-12)
    # its support set is drawn from the union's rows: every global support vector is one
    # that a site sent, with the label that site sent
    union_rows = {row.tobytes(): label for row, label in zip(union_x, union_y, strict=True)}
    for row, label in zip(params["support_vectors"], params["support_labels"], strict=True):
        assert union_rows[row.tobytes()] == label
    assert 0 < len(params["support_vectors"]) <= len(union_x)

    records = round_records(result)
    assert records[0]["metrics"] == {
        "union_size": float(len(union_x)),
        "global_support": float(len(params["support_vectors"])),
    }
    assert [records[0]["site_metrics"][s]["n_support"] for s in SITES] == [
        len(s["support_x"]) for s in sent
    ]
    # the evaluation round: each site's accuracy of the global model, weighted by its size
    evals = [json.loads((result / site / "eval.json").read_text()) for site in SITES]
    weighted = sum(e["accuracy"] * e["n"] for e in evals) / sum(e["n"] for e in evals)
    assert records[1]["metrics"]["accuracy"] == pytest.approx(weighted)
    assert weighted > 0.9
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    assert summary["union_size"] == len(union_x)
    assert summary["final_metrics"]["accuracy"] == pytest.approx(weighted)
