"""examples/hello-dp: one DP budget per site for the whole job, spent round by round."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("opacus")

from ember.filters.rdp import RDPAccountant

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello-dp" / "job.py"
TARGET = 2.0
DELTA = 1e-5
ROUNDS = 3


def test_hello_dp_spends_its_epsilon_across_the_rounds_within_the_target(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--workspace-root",
            str(tmp_path),
            "--num-rounds",
            str(ROUNDS),
            "--target-epsilon",
            str(TARGET),
            "--delta",
            str(DELTA),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    rounds = [
        json.loads(line)
        for line in (tmp_path / "hello-dp" / "server" / "round_metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [r["round"] for r in rounds] == list(range(ROUNDS))
    for site in ("site-1", "site-2"):
        spent = [r["site_metrics"][site]["dp_epsilon"] for r in rounds]
        assert all(a < b for a, b in itertools.pairwise(spent)), spent  # rises every round
        # one accountant for the whole job: the last round ends at the target, not the first
        assert TARGET - 0.05 <= spent[-1] <= TARGET, spent
        assert spent[0] < 0.8 * TARGET, spent
        last = rounds[-1]["site_metrics"][site]
        # what Opacus reported is what core's accountant computes for the same history
        core = RDPAccountant()
        core.step(
            noise_multiplier=last["noise_multiplier"],
            sample_rate=last["sample_rate"],
            steps=last["dp_steps"],
        )
        assert core.get_epsilon(DELTA) == pytest.approx(spent[-1], rel=1e-9)
        assert f"{site}: round {ROUNDS - 1}, epsilon spent {spent[-1]:.3f}" in done.stdout
        summary = json.loads(
            (tmp_path / "hello-dp" / "server" / "metrics_summary.json").read_text()
        )
        assert summary["privacy_spent"]["dp_epsilon"]["by_site"][site] == spent[-1]
    found = re.search(
        rf"test accuracy of the global model after {ROUNDS} rounds: ([\d.]+)", done.stdout
    )
    assert found, done.stdout
    assert float(found[1]) > 0.8  # chance is 0.63 (the benign share)
