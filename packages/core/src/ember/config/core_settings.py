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
]
