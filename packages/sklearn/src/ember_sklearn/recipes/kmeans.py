"""``KMeansFedAvgRecipe``: federated mini-batch k-means."""

from __future__ import annotations

from typing import Any

from ember.recipes import Recipe, check_int, check_optional_int
from ember_sklearn.recipes._common import assemble_job

_CONTROLLER = "ember_sklearn.kmeans:KMeansController"


class KMeansFedAvgRecipe(Recipe):
    """Federated k-means with ``n_clusters`` centres.

    Round 0: each site runs k-means++ on its data and sends its centres with their counts;
    the server runs weighted k-means (``n_init`` runs, ``seed``) on their union. Then
    ``num_rounds`` rounds: each site assigns its points (a seeded random batch of
    ``batch_size`` points, or all of them when ``batch_size`` is None) to the nearest global
    centre and sends per-centre sums and counts; the server aggregates them exactly and
    moves the centres (a Lloyd step over all data, or the mini-batch rule with per-centre
    learning rate). Sites answer with ``ember_sklearn.client.kmeans_step(model, X)``.
    """

    framework = "sklearn"

    def __init__(
        self,
        *,
        name: str = "sklearn-kmeans",
        min_clients: int,
        num_rounds: int = 5,
        n_clusters: int,
        batch_size: int | None = None,
        n_init: int = 10,
        seed: int = 0,
        train_script: str,
        train_args: str = "",
        launch_external_process: bool = False,
        command: str | None = None,
    ) -> None:
        num_rounds = check_int("num_rounds", num_rounds, 1)
        n_clusters = check_int("n_clusters", n_clusters, 1)
        batch_size = check_optional_int("batch_size", batch_size, 1)
        n_init = check_int("n_init", n_init, 1)
        seed = check_int("seed", seed, 0)
        self.model_spec: dict[str, Any] = {
            "algorithm": "kmeans",
            "estimator": "KMeans",
            "params": {"n_clusters": n_clusters, "n_init": n_init, "random_state": seed},
            "batch_size": batch_size,
            "seed": seed,
        }
        assemble_job(
            self,
            name=name,
            min_clients=min_clients,
            train_script=train_script,
            train_args=train_args,
            launch_external_process=launch_external_process,
            command=command,
            workflow={
                "target": _CONTROLLER,
                "args": {"num_rounds": num_rounds, "model_spec": self.model_spec},
            },
        )
