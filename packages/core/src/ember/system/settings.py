"""Settings of a running Ember system (server and client daemons, admin API)."""

from __future__ import annotations

from ember.common.setting import Setting

SYSTEM_SETTINGS: list[Setting] = [
    Setting(
        name="system.start_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long `ember poc start` (and PocEnv) waits for a daemon to be up: the server "
        "listening, a client connected. Past it the start fails with the daemon's log tail.",
        advice="Raise it on slow or loaded machines.",
        minimum=0.1,
        symptom="`the server daemon in FOLDER was not up within system.start_timeout = 60 s "
        "(default)` followed by the daemon's log tail.",
        scenarios=("production", "slow sites"),
    ),
    Setting(
        name="system.stop_timeout",
        type=float,
        default=20.0,
        unit="seconds",
        bounds="How long a stop waits for a daemon (or a job process) after SIGTERM before it is "
        "killed with its whole process group.",
        advice="Raise it when scripts need longer to clean up.",
        minimum=0.1,
        symptom="A daemon or job process is killed with its whole process group, its "
        "scripts' clean-up cut short, when it did not stop this long after SIGTERM.",
        scenarios=("production",),
    ),
    Setting(
        name="system.max_running_jobs",
        type=int,
        default=4,
        unit="jobs",
        bounds="How many jobs the server runs at once; later submissions wait in the queue.",
        advice="Lower it to 1 to run jobs strictly one after another.",
        minimum=1,
    ),
    Setting(
        name="system.deploy_timeout",
        type=float,
        default=300.0,
        unit="seconds",
        bounds="How long the server waits for a client to take a job (download its files and "
        "start its process); a client past it fails the job's start with its name.",
        advice="Raise it for jobs that carry very large files to slow sites.",
        minimum=0.1,
        symptom="The job fails to start with `sites could not start the job: site-1: ...: no "
        "reply from site-1 to 'job.deploy' within system.deploy_timeout = 300 s (default)`.",
        scenarios=("large models", "slow sites", "edge devices"),
    ),
    Setting(
        name="system.admin_timeout",
        type=float,
        default=60.0,
        unit="seconds",
        bounds="How long an admin command (submit, status, abort, download...) waits for the "
        "server's answer.",
        advice="Raise it for submissions and downloads of very large jobs over slow links.",
        minimum=0.1,
        symptom="An admin command fails with `...: no reply from server to 'admin.submit' within "
        "60 s (system.admin_timeout = 60 s (default))`.",
        scenarios=("large models", "production"),
    ),
    Setting(
        name="system.resume_jobs",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether a server daemon that starts again after a crash (`kill -9`, a power "
        "loss) resumes the jobs that were running: each from its last completed round "
        "checkpoint (runtime.checkpoint), from the beginning if none was written. False: "
        "they are marked failed, as before. A stopped server (`ember poc stop`, SIGTERM) "
        "aborts its jobs and resumes none.",
        advice="Turn it off where a job must never run twice past the same round (scripts "
        "with side effects outside the job).",
        scenarios=("production",),
    ),
    Setting(
        name="system.resume_timeout",
        type=float,
        default=300.0,
        unit="seconds",
        bounds="How long a restarted server waits for every site of a job it resumes to "
        "reconnect; past it the job fails, naming the sites that did not come back.",
        advice="Raise it where client daemons may stay down longer than the server; it "
        "should exceed net.reconnect_backoff_max.",
        minimum=0.1,
        symptom="A job fails after a server restart with `... could not resume: site-2 did not "
        "reconnect within system.resume_timeout = 300 s (default); start its client daemon "
        "(ember daemon start) ...`.",
        scenarios=("production",),
    ),
    Setting(
        name="system.run_reconnect_timeout",
        type=float,
        default=300.0,
        unit="seconds",
        bounds="How long a Run handle of PocEnv or ProdEnv (get_status, get_result, abort) "
        "keeps reconnecting to a server it lost (a restart, a network cut) before it raises "
        "the connection error; each attempt waits up to net.connect_timeout.",
        advice="Raise it to ride out longer server maintenance; 0.1 fails almost at once.",
        minimum=0.1,
        symptom="`run.get_status()` raises `lost the server of job ... and could not reach "
        "it again within system.run_reconnect_timeout = 300 s (default): ...`.",
        scenarios=("production",),
    ),
    Setting(
        name="system.warm_job_processes",
        type=bool,
        default=True,
        unit="flag",
        bounds="Whether each daemon (server and client) keeps one spare job process started "
        "ahead of its next job, Python and Ember imported, so a job's processes start in "
        "milliseconds instead of about half a second each; the next spare starts once the "
        "job process it replaced ends. Each spare is an idle Python process (tens of MiB).",
        advice="Turn it off on machines short of memory, or to have every job process "
        "started afresh (`python -m ember.system.server_job_process ...`).",
    ),
]
