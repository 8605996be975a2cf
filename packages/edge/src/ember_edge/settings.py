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
    Setting(
        name="edge.gateway_long_poll",
        type=float,
        default=20.0,
        unit="seconds",
        bounds="The longest a device gateway holds a POST /task that asks to wait "
        "(?wait=seconds) for a task to arrive; a longer wait is cut to this.",
        advice="Raise it (up to what proxies in front of the gateway allow) for fewer "
        "requests from idle devices; lower it behind proxies that cut idle connections.",
        minimum=0.0,
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.gateway_retry_wait",
        type=int,
        default=5,
        unit="seconds",
        bounds="The retry_wait a device gateway tells a device that must ask again later "
        "(no task for it yet, the gateway not ready): whole seconds, as NVFlare's devices "
        "expect.",
        advice="Raise it to spread the requests of many idle devices; lower it for devices "
        "that should pick up a new task sooner (or let them long-poll).",
        minimum=1,
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.gateway_start_timeout",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="How long an aggregator site waits for its device gateway to listen (bind "
        "its port, load its certificate, make its authenticator) before the site fails.",
        advice="Raise it on a slow machine or for an authenticator that loads much at start.",
        minimum=0.01,
        symptom="An aggregator site fails with 'the device gateway did not start within "
        "edge.gateway_start_timeout'.",
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.gateway_stop_timeout",
        type=float,
        default=5.0,
        unit="seconds",
        bounds="How long a device gateway waits, when its job ends, for requests in "
        "progress to finish (held long polls are answered DONE at once) before it closes "
        "their connections.",
        advice="Raise it when devices upload large results over slow links at the job's end.",
        minimum=0.01,
        symptom="The site's log says 'the device gateway did not stop within "
        "edge.gateway_stop_timeout'.",
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.gateway_auth_timeout",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="How long a device gateway waits for its DeviceAuthenticator's verdict on one "
        "request (an async one that asks another service); no verdict in time refuses the "
        "device with 401.",
        advice="Raise it for an identity service that answers slowly; cache verdicts in the "
        "authenticator rather than raise it far.",
        minimum=0.001,
        symptom="Devices get 401 although their tokens are valid, and the site's log says "
        "'the authenticator failed ... edge.gateway_auth_timeout'.",
        scenarios=("edge devices",),
    ),
    Setting(
        name="edge.gateway_max_body",
        type=int,
        default=256 * 1024 * 1024,
        unit="bytes",
        bounds="The largest request body (a device's result) a device gateway reads; a "
        "larger one is refused with 413.",
        advice="Raise it for models larger than a quarter GiB sent as JSON.",
        minimum=1024,
        scenarios=("edge devices", "large models"),
    ),
    Setting(
        name="edge.device_request_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long the HTTP-mode device simulator waits for one gateway response "
        "(a long poll included); a device whose request times out asks again after "
        "edge.gateway_retry_wait.",
        advice="Raise it for large models over slow links.",
        minimum=0.01,
        symptom="The HTTP-mode simulator's stats count many request_errors.",
        scenarios=("edge devices",),
        at_least=("edge.gateway_long_poll",),
    ),
    Setting(
        name="edge.gateway_wait_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long the HTTP-mode device simulator waits for the job's device gateways "
        "to write their gateway.json (their address) before it gives up.",
        advice="Raise it when the job takes long to start its sites.",
        minimum=0.01,
        symptom="The HTTP-mode simulator fails with 'no device gateway wrote gateway.json "
        "within edge.gateway_wait_timeout'.",
        scenarios=("edge devices",),
    ),
)
