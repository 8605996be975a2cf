"""ember-edge's settings (the config registry's ``edge.*``)."""

from __future__ import annotations

from ember.config import Setting

EDGE_SETTINGS = (
    Setting(
        name="edge.report_interval",
        type=float,
        default=1.0,
        unit="seconds",
        bounds="How long an aggregator site holds the server's report task, running its "
        "devices, before it reports the per-version sums of their updates (it reports at "
        "once when every device it runs has answered).",
        advice="Lower it for faster model versions with few, fast devices; raise it to send "
        "fewer, larger reports from many devices.",
        minimum=0.001,
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.report_timeout",
        type=float,
        default=120.0,
        unit="seconds",
        bounds="How long the FedBuff controller waits for one aggregator site's report; a "
        "site that misses it is left out of that report cycle (what it holds comes with its "
        "next report).",
        advice="Raise it when a site's devices take long to compute one task each.",
        minimum=0.01,
        symptom="round_metrics.jsonl lists aggregator sites under timed_out and FedBuff "
        "versions come slowly.",
        scenarios=("edge devices", "slow sites"),
        at_least=("edge.report_interval",),
    ),
    Setting(
        name="edge.device_wait_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long a selected device may take to report its update before the server "
        "frees its slot in the device selection (a device that vanished mid-task); the "
        "recipe's device_wait_timeout overrides it.",
        advice="Raise it for slow devices; lower it where many devices drop out.",
        minimum=0.001,
        symptom="metrics_summary.json counts many timed_out_devices, or a FedBuff job with "
        "devices that vanish makes versions slowly.",
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.progress_timeout",
        type=float,
        default=600.0,
        unit="seconds",
        bounds="How long a FedBuff job may go without a new model version before it fails "
        "(too few devices, every device gone).",
        advice="Raise it for versions that need many slow devices.",
        minimum=0.01,
        symptom="A FedBuff job fails with 'no new model version within edge.progress_timeout'.",
        scenarios=("edge devices",),
        at_least=("edge.report_timeout",),
    ),
)
