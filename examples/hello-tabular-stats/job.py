"""hello-tabular-stats: federated statistics of scikit-learn's diabetes data over 3 sites.

python job.py                  # run in SimEnv
python job.py --env poc        # run on a local PoC system (server + clients, mutual TLS)
python job.py --export         # write the job folder instead (see --export-dir)
"""

import argparse
import json
from pathlib import Path

from diabetes_stats import DiabetesStatistics

from ember import PocEnv, SimEnv
from ember.recipes import FedStatsRecipe
from ember.statistics import GLOBAL

STATISTIC_CONFIGS = {
    "count": {},
    "sum": {},
    "mean": {},
    "stddev": {},
    "min": {},
    "max": {},
    "histogram": {"*": {"bins": 10}, "age": {"bins": 8, "range": [0, 100]}},
    "quantile": {"*": [0.1, 0.5, 0.9]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=3)
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    parser.add_argument("--env", choices=["sim", "poc"], default="sim")
    parser.add_argument("--poc-workspace", default=None, help="default /tmp/ember/poc")
    args, _ = parser.parse_known_args()

    sites = [f"site-{i + 1}" for i in range(args.n_clients)]
    recipe = FedStatsRecipe(
        name="hello-tabular-stats",
        stats_output_path="statistics/diabetes_stats.json",
        sites=sites,
        statistic_configs=STATISTIC_CONFIGS,
        stats_generator=DiabetesStatistics(sites),
        min_count=10,
    )
    env = (
        PocEnv(clients=sites, workspace=args.poc_workspace)
        if args.env == "poc"
        else SimEnv(clients=sites, workspace_root=args.workspace_root)
    )
    run = recipe.execute(env)
    result = Path(run.get_result())
    print(f"status: {run.get_status()}")
    if run.get_status() == "EXPORTED":
        return
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    outputs = recipe.outputs(result)
    stats = json.loads(outputs.json.read_text())
    print(f"\nglobal statistics of the diabetes data over {len(sites)} sites:")
    print(
        f"{'feature':<8} {'count':>6} {'mean':>9} {'stddev':>9} {'min~':>9} {'max~':>9}"
        f" {'q10':>9} {'median':>9} {'q90':>9}"
    )
    for feature, by_statistic in stats.items():
        glob = {name: values[GLOBAL]["diabetes"] for name, values in by_statistic.items()}
        q = glob["quantile"]
        print(
            f"{feature:<8} {glob['count']:>6} {glob['mean']:>9.3f} {glob['stddev']:>9.3f} "
            f"{glob['min']:>9.3f} {glob['max']:>9.3f} {q['0.1']:>9.3f} {q['0.5']:>9.3f} "
            f"{q['0.9']:>9.3f}"
        )
    privacy = json.loads(outputs.privacy.read_text())
    for item in privacy["withheld"]:
        print(f"withheld: {item['site']} {item['feature']} {item['statistic']}: {item['reason']}")
    print("(min~/max~: noised outward at each site; quantiles read off the global histogram)")
    print(f"\nstatistics: {outputs.json}")
    print(f"privacy: {outputs.privacy}")
    print(f"report: {outputs.report}")


if __name__ == "__main__":
    main()
