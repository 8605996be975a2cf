"""Federated statistics: two passes over the sites, then global statistics and a report.

Public as :class:`ember.statistics.StatsController`; ``FedStatsRecipe`` names it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ember.common.messages import TaskResult
from ember.common.model import FLModel
from ember.errors import RecipeArgumentError
from ember.fedstats import spec
from ember.fedstats.aggregate import StatsAggregator, StatsAnswerError
from ember.fedstats.report import plot_report, privacy_path, report_path, write_json
from ember.fedstats.site import ANSWER, FIRST, REQUEST, TASK
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError


class StatsController:
    """Ask ``sites`` for their privacy-checked local statistics in two passes (NVFlare's:
    the global mean is known before the variance and the histograms are asked for), make the
    global statistics and write them.

    Writes, under the server's folder when ``output_path`` is relative:

    - ``output_path`` (``.json``): feature -> statistic -> site or ``"Global"`` -> dataset
      -> value, NVFlare's shape (a histogram is ``[[low, high, count], ...]``, quantiles
      ``{percentile: value}``);
    - ``<stem>.privacy.json``: what each site withheld and why, the limits in force at each
      site, global values that cover only some sites, each histogram's bins and range;
    - ``<stem>.png``: the report (``plots`` extra; skipped with a warning without it).

    Every site in ``sites`` must answer both passes (``min_clients`` is their number).
    """

    def __init__(
        self,
        statistic_configs: dict[str, Any],
        sites: list[str],
        output_path: str = "statistics/stats.json",
    ) -> None:
        try:
            self.request = spec.parse_statistic_configs(statistic_configs)
        except RecipeArgumentError as exc:
            raise JobError(f"the job's statistic_configs: {exc}") from None
        if not sites:
            raise JobError("a federated statistics job needs at least one site")
        self.sites = list(sites)
        self.output_path = output_path

    def run(self, ctx: ServerContext) -> None:
        started = time.monotonic()
        known = list(ctx.board.sites)  # every site of the job, alive or not
        missing = [s for s in self.sites if s not in known]
        if missing:
            raise JobError(
                f"FedStatsRecipe names sites {missing}, which this job does not run (its "
                f"sites: {known}); run it in an env with those clients, or name these"
            )
        aggregator = StatsAggregator(self.request, self.sites)
        passes = 2 if self.request.second_pass() else 1
        first = {"pass": FIRST, "statistic_configs": self.request.to_json()}
        self._pass(ctx, 0, passes, first, aggregator.add_first)
        second = aggregator.second_request()
        if second is not None:
            self._pass(ctx, 1, passes, second, aggregator.add_second)
        result = aggregator.result()
        privacy = {"sites": self.sites, **aggregator.privacy()}
        path = Path(self.output_path)
        if not path.is_absolute():
            path = ctx.server_dir / path
        write_json(path, result)
        write_json(privacy_path(path), privacy)
        report: Path | None = report_path(path)
        try:
            assert report is not None
            plot_report(result, self.sites, report, aggregator.withheld, ctx.job_name)
        except Exception as exc:  # a missing report must not fail a finished job
            ctx.log.warning("could not write the statistics report: %s", exc)
            report = None
        for item in aggregator.withheld:
            ctx.log.info(
                "%s withheld %s of %s/%s: %s",
                item["site"],
                item["statistic"],
                item["dataset"],
                item["feature"],
                item["reason"],
            )
        ctx.state["fed_stats"] = result
        ctx.state["fed_stats_privacy"] = privacy
        ctx.records.summary(
            statistics=str(path),
            privacy=str(privacy_path(path)),
            report=str(report) if report else None,
            withheld=len(aggregator.withheld),
            duration_s=round(time.monotonic() - started, 6),
        )
        ctx.log.info("federated statistics written to %s", path)

    def _pass(
        self,
        ctx: ServerContext,
        index: int,
        passes: int,
        request: dict[str, Any],
        add: Any,
    ) -> None:
        ctx.progress.round_started(index, passes, len(self.sites))

        def on_result(site: str, result: TaskResult) -> None:
            model = result.data or FLModel()
            try:
                add(site, model.meta.get(ANSWER))
            except StatsAnswerError as exc:
                raise JobError(f"{exc}; is {site} running FedStatsRecipe's site script?") from None
            ctx.progress.result_received(site)

        task = FLModel(meta={REQUEST: request})
        ctx.board.broadcast(TASK, task, self.sites, len(self.sites), ctx.task_timeout, on_result)
        ctx.progress.round_done(index, {})
