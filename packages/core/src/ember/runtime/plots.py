"""A PNG of the round metrics (matplotlib, imported only when there is something to plot).

matplotlib comes with the ``plots`` extra (``pip install 'ember-core[plots]'``). Without it
:func:`plot_round_metrics` raises :class:`~ember.errors.MissingDependencyError`; the job
runners catch it, log it as a warning (naming the extra) and finish without the PNG: a
missing plot must not fail a job that otherwise worked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.extras import require


def plot_round_metrics(rounds: list[dict[str, Any]], path: Path) -> bool:
    """Plot each aggregated metric against the round; False when there were no metrics.

    Raises MissingDependencyError (naming the ``plots`` extra) when matplotlib is missing.
    """
    names = sorted(
        {k for r in rounds for k, v in r["metrics"].items() if isinstance(v, int | float)}
    )
    if not names:
        return False
    # no pyplot: the user's backend stays untouched
    figure = require("matplotlib.figure", "plots", "the round-metrics plot")
    fig = figure.Figure(figsize=(6.4, 1.2 + 2.2 * len(names)))
    for i, name in enumerate(names):
        ax = fig.add_subplot(len(names), 1, i + 1)
        points = [(r["round"], r["metrics"][name]) for r in rounds if name in r["metrics"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    fig.axes[-1].set_xlabel("round")
    fig.suptitle("aggregated metrics per round")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
