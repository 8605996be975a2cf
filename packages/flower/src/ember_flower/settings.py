"""ember-flower's settings (the config registry's ``flower.*``)."""

from __future__ import annotations

from ember.config import Setting

FLOWER_SETTINGS = (
    Setting(
        name="flower.start_timeout",
        type=float,
        default=120.0,
        unit="seconds",
        bounds="How long a Flower process may take to come up: the SuperLink to listen, each "
        "site's SuperNode to register through the tunnel, `flwr run` to submit the app.",
        advice="Raise it on a loaded machine where importing flwr takes long.",
        minimum=1.0,
        symptom="A Flower job fails with 'the SuperLink did not listen within "
        "flower.start_timeout' or 'N of M SuperNodes registered within flower.start_timeout'.",
        scenarios=("slow sites",),
    ),
    Setting(
        name="flower.run_timeout",
        type=float,
        default=86400.0,
        unit="seconds",
        bounds="How long a Flower run may take from its submission to its end, when the "
        "recipe's timeout is 0; then the run is stopped and the job fails.",
        advice="Set FlowerRecipe(timeout=...) or raise this for long Flower runs.",
        minimum=1.0,
        symptom="A Flower job fails with 'the Flower run did not finish within "
        "flower.run_timeout'.",
        scenarios=("large models", "slow sites"),
    ),
    Setting(
        name="flower.stop_timeout",
        type=float,
        default=10.0,
        unit="seconds",
        bounds="How long a Flower process group (SuperLink or SuperNode with their "
        "SuperExec, ServerApp and ClientApp processes) may take to exit after SIGTERM "
        "before it is killed; also bounds `flwr stop` and `flwr ls`.",
        advice="Raise it if a ClientApp must write something as it stops.",
        minimum=0.1,
        symptom="A Flower ServerApp or ClientApp is killed before it finished writing "
        "what it writes as it stops, or `flwr stop` / `flwr ls` time out at the end of a job.",
        scenarios=("slow sites",),
    ),
    Setting(
        name="flower.poll_interval",
        type=float,
        default=1.0,
        unit="seconds",
        bounds="How often, while a Flower run goes on, the server job checks for an abort, a "
        "dead site and the SuperLink's health, and each site checks its SuperNode.",
        advice="Lower it for faster reactions to a dead site; each check is cheap.",
        minimum=0.05,
    ),
)
