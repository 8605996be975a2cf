"""Federated mini-batch k-means.

Round 0 (``init``): each site clusters its own data with k-means++ and sends its centres
with their counts; the server runs weighted k-means on the union, so the initial centres
depend on every site. Rounds 1..N (``update``): each site assigns a batch of its points to
the nearest global centre and sends per-centre ``sums`` and ``counts``; the server adds
them (exact, order-free) and moves the centres:

- ``batch_size=None`` (all points): ``centre = sums / counts``, one exact Lloyd step over
  the union of the sites' data;
- ``batch_size=B``: scikit-learn's mini-batch rule with per-centre learning rate
  ``counts / total_counts``: ``centre += (sums - counts * centre) / total_counts``.

A centre that received no point keeps its place.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np

import ember.client as flare
from ember.common import FLModel, MetaKey, ParamsType, TaskName, TaskResult
from ember.controllers import JobError, ServerContext
from ember_sklearn.model_io import save_model
from ember_sklearn.spec import PHASE_KEY, SPEC_KEY, build_estimator, model_spec

CENTERS = "centers"
COUNTS = "counts"
SUMS = "sums"
PHASE_INIT = "init"
PHASE_UPDATE = "update"


# -- site side ------------------------------------------------------------------------------
def local_centers(x: np.ndarray, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    """k-means (k-means++ init) on this site's points alone: ``centers`` (k', d) and their
    ``counts`` (k'), where k' = min(k, number of points)."""
    x = np.asarray(x, dtype=np.float64)
    params = dict(spec["params"])
    params["n_clusters"] = min(int(params["n_clusters"]), len(x))
    model = build_estimator({"estimator": "KMeans", "params": params}).fit(x)
    counts = np.bincount(model.labels_, minlength=params["n_clusters"]).astype(np.float64)
    return {CENTERS: np.asarray(model.cluster_centers_, dtype=np.float64), COUNTS: counts}


def cluster_sums(x: np.ndarray, centers: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Assign each point to its nearest centre: per-centre ``sums`` (k, d) and ``counts`` (k),
    and the inertia (sum of squared distances to the assigned centres)."""
    from sklearn.metrics import pairwise_distances_argmin_min

    x = np.asarray(x, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    labels, distances = pairwise_distances_argmin_min(x, centers)
    sums = np.zeros_like(centers)
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=len(centers)).astype(np.float64)
    return {SUMS: sums, COUNTS: counts}, float(np.sum(distances**2))


def predict_clusters(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """The index of each point's nearest centre."""
    from sklearn.metrics import pairwise_distances_argmin

    labels: np.ndarray = pairwise_distances_argmin(np.asarray(x, dtype=np.float64), centers)
    return labels


def batch_rng(spec: dict[str, Any], site: str, rnd: int) -> np.random.Generator:
    """The seeded generator a site draws its mini-batch of round ``rnd`` with."""
    return np.random.default_rng([int(spec["seed"]), zlib.crc32(site.encode()), rnd])


def kmeans_step(model: FLModel, x: np.ndarray, site: str | None = None) -> FLModel:
    """This site's answer to a k-means task: local centres (init) or cluster sums (update).
    Weighted by the number of points used (``NUM_STEPS_CURRENT_ROUND``)."""
    spec = model_spec(model)
    x = np.asarray(x, dtype=np.float64)
    metrics: dict[str, float] = {}
    if model.meta.get(PHASE_KEY) == PHASE_INIT:
        params = local_centers(x, spec)
        used = len(x)
    else:
        batch_size = spec.get("batch_size")
        if batch_size and batch_size < len(x):
            rng = batch_rng(spec, site or flare.get_site_name(), model.current_round or 0)
            x = x[rng.choice(len(x), size=batch_size, replace=False)]
        params, inertia = cluster_sums(x, (model.params or {})[CENTERS])
        metrics["inertia"] = inertia
        used = len(x)
    return FLModel(
        params_type=ParamsType.FULL,
        params=params,
        metrics=metrics,
        meta={MetaKey.NUM_STEPS_CURRENT_ROUND: used},
        current_round=model.current_round,
    )


# -- server side ----------------------------------------------------------------------------
def init_centers(
    site_centers: list[np.ndarray], site_counts: list[np.ndarray], spec: dict[str, Any]
) -> np.ndarray:
    """Weighted k-means (k-means++ init, ``n_init`` runs, seeded) on the union of the sites'
    centres, each weighted by its count."""
    union = np.concatenate(site_centers)
    weights = np.concatenate(site_counts)
    k = int(spec["params"]["n_clusters"])
    if len(union) < k:
        raise JobError(
            f"k-means init: the sites sent {len(union)} centres in all, fewer than n_clusters={k}"
        )
    model = build_estimator({"estimator": "KMeans", "params": spec["params"]})
    model.fit(union, sample_weight=weights)
    return np.asarray(model.cluster_centers_, dtype=np.float64)


def update_centers(
    centers: np.ndarray,
    total_counts: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    minibatch: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """New centres and counts from the aggregated ``sums`` and ``counts`` of one round.

    Lloyd (``minibatch=False``): ``sums / counts``; the counts are this round's.
    Mini-batch: ``total += counts``; ``centre += (sums - counts * centre) / total``.
    """
    new = np.array(centers, dtype=np.float64, copy=True)
    hit = counts > 0
    if minibatch:
        total = total_counts + counts
        new[hit] += (sums[hit] - counts[hit, None] * new[hit]) / total[hit, None]
        return new, total
    new[hit] = sums[hit] / counts[hit, None]
    return new, np.array(counts, dtype=np.float64)


class ClusterSums:
    """One round's per-centre sums and counts, added up as results arrive (exact)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.sums = np.zeros(shape)
        self.counts = np.zeros(shape[0])
        self.inertia = 0.0
        self.site_metrics: dict[str, dict[str, Any]] = {}

    def add(self, site: str, sums: Any, counts: Any, metrics: dict[str, Any]) -> None:
        sums = np.asarray(sums, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        if sums.shape != self.sums.shape or counts.shape != self.counts.shape:
            raise JobError(
                f"{site}: k-means sums/counts have shapes {sums.shape}/{counts.shape}, "
                f"expected {self.sums.shape}/{self.counts.shape}"
            )
        self.sums += sums
        self.counts += counts
        self.inertia += float(metrics.get("inertia", 0.0))
        self.site_metrics[site] = {**metrics, "n_samples": float(counts.sum())}


class KMeansController:
    """Round 0: initial centres from the union of local centres; then ``num_rounds`` rounds of
    exact (mini-batch) updates. Saves ``models/global_model.npz`` (centers, counts) + .json."""

    def __init__(self, num_rounds: int, min_clients: int, model_spec: dict[str, Any]) -> None:
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.spec = model_spec

    def _task(self, rnd: int, phase: str, params: dict[str, Any] | None) -> FLModel:
        return FLModel(
            params_type=ParamsType.FULL if params else None,
            params=params,
            current_round=rnd,
            total_rounds=self.num_rounds + 1,
            meta={SPEC_KEY: self.spec, PHASE_KEY: phase},
        )

    def run(self, ctx: ServerContext) -> None:
        total_rounds = self.num_rounds + 1
        path = ctx.server_dir / "models" / "global_model.npz"
        minibatch = bool(self.spec.get("batch_size"))

        started = time.monotonic()
        ctx.progress.round_started(0, total_rounds, len(ctx.board.alive_sites()))
        site_centers: list[np.ndarray] = []
        site_counts: list[np.ndarray] = []
        site_metrics: dict[str, dict[str, Any]] = {}

        def keep(site: str, result: TaskResult) -> None:
            params = _params(site, result, (CENTERS, COUNTS))
            site_centers.append(np.asarray(params[CENTERS], dtype=np.float64))
            site_counts.append(np.asarray(params[COUNTS], dtype=np.float64))
            site_metrics[site] = {"n_centers": len(site_centers[-1])}
            ctx.progress.result_received(site)

        collected = ctx.board.broadcast(
            TaskName.TRAIN,
            self._task(0, PHASE_INIT, None),
            ctx.board.alive_sites(),
            self.min_clients,
            ctx.task_timeout,
            keep,
        )
        centers = init_centers(site_centers, site_counts, self.spec)
        counts = np.zeros(len(centers))
        save_model({CENTERS: centers, COUNTS: counts}, self.spec, path)
        metrics = {"union_centers": float(sum(len(c) for c in site_centers))}
        ctx.records.round(0, collected, metrics, site_metrics, time.monotonic() - started)
        ctx.progress.round_done(0, metrics)

        for rnd in range(1, total_rounds):
            started = time.monotonic()
            targets = ctx.board.alive_sites()
            ctx.progress.round_started(rnd, total_rounds, len(targets))
            round_sums = ClusterSums(centers.shape)

            def add(site: str, result: TaskResult, round_sums: ClusterSums = round_sums) -> None:
                params = _params(site, result, (SUMS, COUNTS))
                metrics = (result.data.metrics if result.data else None) or {}
                round_sums.add(site, params[SUMS], params[COUNTS], metrics)
                ctx.progress.result_received(site)

            collected = ctx.board.broadcast(
                TaskName.TRAIN,
                self._task(rnd, PHASE_UPDATE, {CENTERS: centers}),
                targets,
                self.min_clients,
                ctx.task_timeout,
                add,
            )
            centers, counts = update_centers(
                centers, counts, round_sums.sums, round_sums.counts, minibatch
            )
            save_model({CENTERS: centers, COUNTS: counts}, self.spec, path)
            metrics = {"inertia": round_sums.inertia, "n_samples": float(round_sums.counts.sum())}
            duration = time.monotonic() - started
            ctx.records.round(rnd, collected, metrics, round_sums.site_metrics, duration)
            ctx.progress.round_done(rnd, metrics)

        ctx.state["global_params"] = {CENTERS: centers, COUNTS: counts}
        ctx.state["global_model_path"] = path
        ctx.records.summary(rounds_completed=total_rounds, num_rounds=total_rounds)


def _params(site: str, result: TaskResult, keys: tuple[str, ...]) -> dict[str, Any]:
    params = (result.data.params if result.data else None) or {}
    missing = [k for k in keys if k not in params]
    if missing:
        raise JobError(f"{site}: a k-means result must hold {list(keys)}; missing {missing}")
    return params
