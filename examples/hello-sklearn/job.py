"""hello-sklearn: federated linear model, k-means and SVM with scikit-learn over 3 sites.

python job.py                    # all three, in SimEnv; prints centralised vs federated figures
python job.py --algo kmeans      # one of linear, kmeans, svm
python job.py --algo linear --estimator LogisticRegression
python job.py --algo svm --export --export-dir /tmp/jobs   # write the job folder instead
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from data import breast_cancer_site, central_breast_cancer, central_iris
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import adjusted_rand_score
from sklearn.svm import SVC

from ember import SimEnv
from ember.recipes import Recipe
from ember_sklearn.client import load_linear_model, load_model, predict_clusters
from ember_sklearn.recipes import KMeansFedAvgRecipe, SklearnFedAvgRecipe, SVMFedAvgRecipe

HERE = Path(__file__).parent
LINEAR_PARAMS = {
    "SGDClassifier": {
        "loss": "log_loss",
        "alpha": 1e-3,
        "learning_rate": "constant",
        "eta0": 0.01,
        "max_iter": 5,  # local epochs per round
        "tol": None,
        "random_state": 0,
    },
    "LogisticRegression": {"C": 1.0, "max_iter": 100},  # lbfgs, warm-started each round
}


def run(recipe: Recipe, args: argparse.Namespace) -> Path | None:
    """Execute in SimEnv; the result folder, or None when the job was only exported."""
    env = SimEnv(num_clients=args.n_sites, workspace_root=args.workspace_root)
    result = recipe.execute(env)
    if result.get_status() == "EXPORTED":
        return None
    if result.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(f"{recipe.name}: {result.get_status()}: {result.get_message()}")
    return Path(result.get_result())


def linear(args: argparse.Namespace) -> None:
    recipe = SklearnFedAvgRecipe(
        name="hello-sklearn-linear",
        min_clients=args.n_sites,
        num_rounds=args.num_rounds,
        estimator=args.estimator,
        model_params=LINEAR_PARAMS[args.estimator],
        n_features=30,
        classes=[0, 1],
        train_script=str(HERE / "client_linear.py"),
        train_args=f"--n-sites {args.n_sites} --seed {args.seed}",
    )
    result = run(recipe, args)
    if result is None:
        return
    model = load_linear_model(result / "server" / "models" / "global_model.npz")
    correct = total = 0
    for i in range(args.n_sites):  # each site's test part, scaled as that site scales it
        *_, x_test, y_test = breast_cancer_site(f"site-{i + 1}", args.n_sites, args.seed)
        correct += int(np.sum(model.predict(x_test) == y_test))
        total += len(y_test)
    federated = correct / total
    x_train, y_train, x_test, y_test = central_breast_cancer(args.n_sites, args.seed)
    if args.estimator == "SGDClassifier":  # as many epochs as the federation ran
        epochs = LINEAR_PARAMS["SGDClassifier"]["max_iter"] * args.num_rounds
        central = SGDClassifier(**{**LINEAR_PARAMS["SGDClassifier"], "max_iter": epochs})
    else:
        central = LogisticRegression(**{**LINEAR_PARAMS["LogisticRegression"], "max_iter": 1000})
    centralised = float(central.fit(x_train, y_train).score(x_test, y_test))
    print(f"[linear] {args.estimator} on breast_cancer, {args.n_sites} sites, "
          f"{args.num_rounds} rounds, {total} test samples")
    print(f"[linear] centralised accuracy {centralised:.4f}   federated accuracy {federated:.4f}"
          f"   difference {100 * (federated - centralised):+.2f} points")


def kmeans(args: argparse.Namespace) -> None:
    recipe = KMeansFedAvgRecipe(
        name="hello-sklearn-kmeans",
        min_clients=args.n_sites,
        num_rounds=args.num_rounds,
        n_clusters=3,
        seed=args.seed,
        train_script=str(HERE / "client_kmeans.py"),
        train_args=f"--n-sites {args.n_sites} --seed {args.seed}",
    )
    result = run(recipe, args)
    if result is None:
        return
    params, _ = load_model(result / "server" / "models" / "global_model.npz")
    x, species = central_iris()
    federated = predict_clusters(x, params["centers"])
    centralised = KMeans(n_clusters=3, n_init=10, random_state=args.seed).fit_predict(x)
    ari = adjusted_rand_score(centralised, federated)
    print(f"[kmeans] iris, {args.n_sites} sites, init + {args.num_rounds} rounds")
    print(f"[kmeans] adjusted Rand index, federated vs centralised KMeans: {ari:.4f}")
    print(f"[kmeans] ARI against the species: federated "
          f"{adjusted_rand_score(species, federated):.4f}, centralised "
          f"{adjusted_rand_score(species, centralised):.4f}")


def svm(args: argparse.Namespace) -> None:
    recipe = SVMFedAvgRecipe(
        name="hello-sklearn-svm",
        min_clients=args.n_sites,
        kernel="rbf",
        C=1.0,
        train_script=str(HERE / "client_svm.py"),
        train_args=f"--n-sites {args.n_sites} --seed {args.seed}",
    )
    result = run(recipe, args)
    if result is None:
        return
    summary = json.loads((result / "server" / "metrics_summary.json").read_text())
    federated = summary["final_metrics"]["accuracy"]  # the sites' evaluation, sample-weighted
    x_train, y_train, x_test, y_test = central_breast_cancer(args.n_sites, args.seed)
    centralised = float(SVC(kernel="rbf", C=1.0).fit(x_train, y_train).score(x_test, y_test))
    print(f"[svm] breast_cancer, {args.n_sites} sites: the sites sent {summary['union_size']} "
          f"support vectors; the global SVM keeps {summary['global_support_size']}")
    print(f"[svm] centralised accuracy {centralised:.4f}   federated accuracy {federated:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algo", choices=["all", "linear", "kmeans", "svm"], default="all")
    parser.add_argument(
        "--estimator", choices=["SGDClassifier", "LogisticRegression"], default="SGDClassifier"
    )
    parser.add_argument("--n-sites", type=int, default=3)
    parser.add_argument("--num-rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    args, _ = parser.parse_known_args()
    for name, algo in (("linear", linear), ("kmeans", kmeans), ("svm", svm)):
        if args.algo in ("all", name):
            algo(args)


if __name__ == "__main__":
    main()
