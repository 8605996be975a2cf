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

#: at most this many sites get a line of their own (the first in name order)
MAX_SITE_LINES = 20


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot_round_metrics(rounds: list[dict[str, Any]], path: Path) -> bool:
    """Write :func:`round_metrics_figure` to ``path`` (a PNG); False when there were no
    metrics.

    Raises MissingDependencyError (naming the ``plots`` extra) when matplotlib is missing.
    """
    fig = round_metrics_figure(rounds)
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    return True


def round_metrics_figure(rounds: list[dict[str, Any]]) -> Any:
    """A matplotlib Figure: each aggregated metric against the round (whole rounds on the x
    axis), with a thinner line per site (its own value of that metric, up to
    :data:`MAX_SITE_LINES` sites) beside it; None when there are no metrics."""
    names = sorted({k for r in rounds for k, v in r["metrics"].items() if _number(v)})
    if not names:
        return None
    # no pyplot: the user's backend stays untouched
    figure = require("matplotlib.figure", "plots", "the round-metrics plot")
    ticker = require("matplotlib.ticker", "plots", "the round-metrics plot")
    fig = figure.Figure(figsize=(6.4, 1.2 + 2.2 * len(names)))
    for i, name in enumerate(names):
        ax = fig.add_subplot(len(names), 1, i + 1)
        sites = sorted(
            {
                site
                for r in rounds
                for site, values in (r.get("site_metrics") or {}).items()
                if _number((values or {}).get(name))
            }
        )[:MAX_SITE_LINES]
        for site in sites:
            points = [
                (r["round"], r["site_metrics"][site][name])
                for r in rounds
                if _number(((r.get("site_metrics") or {}).get(site) or {}).get(name))
            ]
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                linewidth=0.8,
                alpha=0.6,
                marker=".",
                label=site,
            )
        points = [
            (r["round"], r["metrics"][name]) for r in rounds if _number(r["metrics"].get(name))
        ]
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color="black",
            linewidth=2,
            marker="o",
            label="aggregate",
        )
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        if len(sites) <= 10:
            ax.legend(fontsize="small", loc="best")
    fig.axes[-1].set_xlabel("round")
    fig.suptitle("metrics per round: the aggregate and each site")
    fig.tight_layout()
    return fig
