"""The result files of a federated statistics job: the JSON (NVFlare's shape), the privacy
notes beside it, and a PNG report (matplotlib, the ``plots`` extra).

The PNG has one row per dataset and feature: on the left the histogram (the global one as
bars, each site's as a line), on the right a table of the other statistics (one column per
site, then Global). Without matplotlib :func:`plot_report` raises
:class:`~ember.errors.MissingDependencyError` naming the extra; the controller logs it and
finishes without the PNG, as the round-metrics plot does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ember.extras import require
from ember.fedstats import spec

#: the statistics the table shows, in order (histograms are plotted, quantiles tabled)
TABLE = (
    spec.COUNT,
    spec.FAILURE_COUNT,
    spec.SUM,
    spec.MEAN,
    spec.STDDEV,
    spec.VAR,
    spec.MIN,
    spec.MAX,
)


def privacy_path(json_path: Path) -> Path:
    """Where the privacy notes go: ``stats.json`` -> ``stats.privacy.json``."""
    return json_path.with_name(f"{json_path.stem}.privacy.json")


def report_path(json_path: Path) -> Path:
    """Where the PNG report goes: ``stats.json`` -> ``stats.png``."""
    return json_path.with_suffix(".png")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _fmt(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _rows(
    result: dict[str, Any], feature: str, dataset: str, columns: list[str]
) -> list[tuple[str, list[str]]]:
    stats = result.get(feature, {})
    rows = []
    for statistic in TABLE:
        if statistic in stats:
            rows.append(
                (statistic, [_fmt(stats[statistic].get(c, {}).get(dataset, "")) for c in columns])
            )
    quantiles = {
        who: {float(p): v for p, v in by.get(dataset, {}).items()}
        for who, by in stats.get(spec.QUANTILE, {}).items()
    }
    for p in sorted({p for by in quantiles.values() for p in by}):
        cells = [_fmt(quantiles.get(c, {}).get(p, "")) for c in columns]
        rows.append((f"quantile {p:g}", cells))
    return rows


def plot_report(
    result: dict[str, Any],
    sites: list[str],
    path: Path,
    withheld: list[dict[str, str]] | None = None,
    title: str = "federated statistics",
) -> None:
    """Write the PNG report of ``result`` (feature -> statistic -> site/Global -> dataset)."""
    figure = require("matplotlib.figure", "plots", "the federated statistics report")
    columns = [*sites, spec.GLOBAL]
    panels = []
    for feature, stats in result.items():
        datasets = list(
            dict.fromkeys(d for by in stats.values() for who in by.values() for d in who)
        )
        for dataset in datasets:
            panels.append((feature, dataset))
    notes = [
        f"{w['site']}: {w['dataset']}/{w['feature']} {w['statistic']} withheld ({w['reason']})"
        for w in withheld or []
    ]
    height = 0.8 + 2.6 * max(len(panels), 1) + 0.22 * len(notes)
    fig = figure.Figure(figsize=(13.0, height))
    grid = fig.add_gridspec(
        max(len(panels), 1) + (1 if notes else 0),
        2,
        width_ratios=[1.1, 1.0],
        height_ratios=[2.6] * max(len(panels), 1) + ([0.22 * len(notes)] if notes else []),
    )
    for row, (feature, dataset) in enumerate(panels):
        stats = result[feature]
        hist_ax = fig.add_subplot(grid[row, 0])
        histograms = stats.get(spec.HISTOGRAM, {})
        drawn = False
        overall = histograms.get(spec.GLOBAL, {}).get(dataset)
        if overall:
            hist_ax.bar(
                [b[0] for b in overall],
                [b[2] for b in overall],
                width=[b[1] - b[0] for b in overall],
                align="edge",
                color="0.82",
                edgecolor="0.55",
                label=spec.GLOBAL,
            )
            drawn = True
        for site in sites:
            bins = histograms.get(site, {}).get(dataset)
            if bins:
                xs = [b[0] for b in bins] + [bins[-1][1]]
                ys = [b[2] for b in bins] + [bins[-1][2]]
                hist_ax.step(xs, ys, where="post", label=site, linewidth=1.2)
                drawn = True
        if drawn:
            hist_ax.legend(fontsize=7, loc="upper right")
            hist_ax.set_ylabel("records", fontsize=8)
        else:
            hist_ax.text(0.5, 0.5, "no histogram", ha="center", va="center", color="0.5")
            hist_ax.set_xticks([])
            hist_ax.set_yticks([])
        hist_ax.set_title(f"{feature}  ({dataset})", fontsize=10, loc="left")
        hist_ax.tick_params(labelsize=7)
        table_ax = fig.add_subplot(grid[row, 1])
        table_ax.axis("off")
        rows = _rows(result, feature, dataset, columns)
        if rows:
            table = table_ax.table(
                cellText=[r[1] for r in rows],
                rowLabels=[r[0] for r in rows],
                colLabels=columns,
                loc="center",
                cellLoc="right",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(7)
            table.scale(1.0, 1.15)
    if notes:
        note_ax = fig.add_subplot(grid[-1, :])
        note_ax.axis("off")
        note_ax.text(
            0.0, 1.0, "\n".join(notes), va="top", ha="left", fontsize=7, family="monospace"
        )
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
