"""The tunables ember-core declares. Components read them with ``ember.config.get_setting``."""

from __future__ import annotations

from ember.config.setting import Setting

CORE_SETTINGS: list[Setting] = [
    Setting(
        name="fobs.max_depth",
        type=int,
        default=256,
        unit="levels",
        bounds="How deeply tuples, sets and registered objects may nest in one decoded FOBS "
        "message; deeper messages are refused with FOBSError instead of exhausting the stack.",
        advice="Raise it only for legitimately deep structures (deeply nested configs).",
        minimum=1,
    ),
    Setting(
        name="fobs.max_message_bytes",
        type=int,
        default=1 << 40,
        unit="bytes",
        bounds="The largest FOBS frame read from a stream or file; a header declaring more is "
        "refused before anything is allocated.",
        advice="Raise it for models larger than 1 TiB; lower it on sites that must bound the "
        "memory a peer can make them allocate.",
        minimum=1,
    ),
    Setting(
        name="runtime.task_timeout",
        type=float,
        default=3600.0,
        unit="seconds",
        bounds="How long the server waits for one site's result of one task (a training "
        "round, a validation). A site past it is left out of that round; if fewer than "
        "min_clients answered, the job fails with the names of the late sites.",
        advice="Raise it when local training legitimately takes longer than an hour per round; "
        "lower it to fail fast in tests.",
        minimum=0.001,
    ),
    Setting(
        name="runtime.task_poll_interval",
        type=float,
        default=5.0,
        unit="seconds",
        bounds="How long one task request from a site waits at the server before the site "
        "asks again (a long poll; a new task or the job's end answers at once).",
        advice="Rarely: lower it if proxies drop idle requests sooner.",
        minimum=0.001,
    ),
    Setting(
        name="runtime.site_stop_timeout",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="How long a job waits, once it ended, for the sites' scripts to return; "
        "subprocess scripts still running then are terminated, then killed.",
        advice="Raise it if scripts do long clean-up after their last task.",
        minimum=0.0,
    ),
    Setting(
        name="runtime.subprocess_connect_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long a site waits for its script, launched as a subprocess, to call "
        "flare.init() and connect; a script that does not is killed and the site fails.",
        advice="Raise it for scripts whose imports take longer than a minute (large frameworks "
        "on slow disks).",
        minimum=0.001,
    ),
    Setting(
        name="sim.serialize_messages",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether SimEnv passes every message through FOBS, as a networked env would.",
        advice="Leave it on: it catches unserializable params in simulation. Off saves an "
        "encode and decode per message: about 30% of the CPU time of a 1000-site job with a "
        "tiny model (benchmarks/sim_overhead.py).",
    ),
]
