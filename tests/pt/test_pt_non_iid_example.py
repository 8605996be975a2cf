"""examples/pt-non-iid: the Dirichlet partition, and job.py comparing the four algorithms."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "pt-non-iid"
ALGORITHMS = ("FedAvg", "FedProx", "SCAFFOLD", "FedOpt")


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    # loaded under its own name: "data" is a common module name
    spec = importlib.util.spec_from_file_location("pt_non_iid_data", EXAMPLE / "data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dirichlet_partition_is_deterministic_disjoint_and_non_iid(data) -> None:  # type: ignore[no-untyped-def]
    labels = data.train_labels()
    parts = data.dirichlet_partition(labels, 8, 0.1, seed=0)
    again = data.dirichlet_partition(labels, 8, 0.1, seed=0)
    assert len(parts) == 8
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = data.dirichlet_partition(labels, 8, 0.1, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined)) == len(labels)  # disjoint
    assert np.array_equal(np.sort(joined), np.arange(len(labels)))  # covers every row
    assert min(len(p) for p in parts) >= 10
    # non-IID: at alpha=0.1 most sites hold most of their rows in at most 3 labels
    dominated = 0
    for p in parts:
        counts = np.sort(np.bincount(labels[p], minlength=10))[::-1]
        dominated += counts[:3].sum() >= 0.8 * counts.sum()
    assert dominated >= 6
    # a large alpha is close to IID: every site sees every label
    iid = data.dirichlet_partition(labels, 8, 1000.0, seed=0)
    assert all(len(np.unique(labels[p])) == 10 for p in iid)


def test_dirichlet_partition_tops_up_small_sites(data) -> None:  # type: ignore[no-untyped-def]
    labels = np.repeat(np.arange(10), 10)  # 100 rows: 30 sites of 3 leave no slack
    parts = data.dirichlet_partition(labels, 30, 0.01, seed=0, min_size=3)
    assert min(len(p) for p in parts) >= 3
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(100))
    with pytest.raises(ValueError, match="cannot give 30 sites 4 each"):
        data.dirichlet_partition(labels, 30, 0.1, seed=0, min_size=4)


def test_job_compares_four_algorithms(tmp_path: Path) -> None:
    rounds = 2
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "job.py"),
            *("--rounds", str(rounds), "--workspace", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "pt-non-iid"
    table = (out / "results.md").read_text()
    assert table.splitlines()[0].startswith("# pt-non-iid")
    for name in ALGORITHMS:
        row = re.search(
            rf"^\| {name} \| ([\d.]+) \| ([\d.]+) \(\d+\) \| (\d+) \| ([\d.]+) \|$", table, re.M
        )
        assert row, table
        final, best = float(row[1]), float(row[2])
        assert 0.0 <= final <= best <= 1.0
        assert int(row[3]) == rounds
        assert f"| {name} |" in done.stdout  # the table is printed too
    png = (out / "accuracy.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000
    for key in ("fedavg", "fedprox", "scaffold", "fedopt"):
        lines = (tmp_path / f"pt-non-iid-{key}" / "server" / "round_metrics.jsonl").read_text()
        records = [json.loads(line) for line in lines.splitlines()]
        assert [r["round"] for r in records] == list(range(rounds))
        for r in records:
            assert len(r["sites"]) == 8
            assert 0.0 <= r["metrics"]["accuracy"] <= 1.0
    # the same split and initial model: every algorithm starts from the same accuracy
    results = json.loads((out / "results.json").read_text())["results"]
    assert len({r["accuracy"][0] for r in results}) == 1
