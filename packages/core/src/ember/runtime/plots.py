"""A PNG of the round metrics (matplotlib, imported only when there is something to plot).

matplotlib comes with the ``plots`` extra (``pip install 'ember-core[plots]'``). Without it
:func:`plot_round_metrics` raises :class:`~ember.errors.MissingDependencyError`; the job
runners catch it, log it as a warning (naming the extra) and finish without the PNG: a
missing plot must not fail a job that otherwise worked.

Importing matplotlib and rendering cost about half a second, more than a small simulated job
itself, so SimEnv renders off the job's critical path: :func:`plot_in_background` starts
``python -m ember.runtime.plots`` in its own session, which reads ``round_metrics.jsonl`` and
writes the PNG beside it while the job's process carries on (or exits). The PNG appears
shortly after the run returns; :meth:`ember.envs.sim.SimRun.wait_for_plot` waits for it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ember.errors import MissingDependencyError
from ember.extras import require

#: the PNG's name, beside ``round_metrics.jsonl`` in the server's folder
PNG_NAME = "round_metrics.png"
JSONL_NAME = "round_metrics.jsonl"

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
    fig.savefig(path, dpi=100, format="png")
    return True


def has_metrics(rounds: list[dict[str, Any]]) -> bool:
    """Whether any round has a numeric aggregated metric (something to plot)."""
    return any(_number(v) for r in rounds for v in r["metrics"].values())


def plot_in_background(
    rounds: list[dict[str, Any]], server_dir: Path
) -> subprocess.Popen[bytes] | None:
    """Start rendering ``server_dir/round_metrics.jsonl`` into ``round_metrics.png`` in a
    process of its own (its own session: it outlives this one and ignores its Ctrl-C); None
    when ``rounds`` has no metrics.

    Raises MissingDependencyError (naming the ``plots`` extra) when matplotlib is missing;
    only its presence is checked here (nothing is imported). What the renderer fails on later
    goes to ``server_dir/log.txt`` as a WARNING line.
    """
    if not has_metrics(rounds):
        return None
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError(
            "the round-metrics plot needs matplotlib, which is not installed: "
            "pip install 'ember-core[plots]'",
            name="matplotlib",
        )
    env = dict(os.environ)
    # the child finds this very ember even where the parent got it through sys.path alone
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with open(server_dir / "log.txt", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ember.runtime.plots", str(server_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


def _main(server_dir: Path) -> int:
    """Render ``server_dir/round_metrics.jsonl`` (what :func:`plot_in_background` runs)."""
    try:
        with open(server_dir / JSONL_NAME, encoding="utf-8") as f:
            rounds = [json.loads(line) for line in f if line.strip()]
        tmp = server_dir / (PNG_NAME + ".part")
        if plot_round_metrics(rounds, tmp):
            tmp.replace(server_dir / PNG_NAME)  # the PNG appears whole or not at all
    except Exception as exc:  # reported in the server's log
        print(f"WARNING could not plot round metrics: {exc}", file=sys.stderr)
        return 1
    return 0


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


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1])))
