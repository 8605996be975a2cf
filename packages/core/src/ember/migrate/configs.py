"""Config-based NVFlare jobs: name each component class of a job's config files.

An NVFlare job folder of the config kind holds ``config_fed_server.json`` and
``config_fed_client.json`` (or ``.yaml``/``.yml``/``.conf``) under ``app*/config/``. Ember
has no config-based jobs: such a job is ported by hand to a recipe script, so each component
class found (a ``path`` such as ``nvflare.app_common.workflows.scatter_and_gather.
ScatterAndGather``, or a ``name`` such as ``TBAnalyticsReceiver``) is reported with what
corresponds to it in Ember (:data:`ember.migrate.mapping.COMPONENTS`), or that nothing does.
"""

from __future__ import annotations

import re
from pathlib import Path

from ember.migrate.mapping import COMPONENTS
from ember.migrate.transformer import Problem

CONFIG_STEMS = ("config_fed_server", "config_fed_client")
CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".conf")

# "path": "a.b.Class" / path = a.b.Class / name: Class, in JSON, YAML or HOCON
_COMPONENT = re.compile(
    r"""["']?\b(?P<key>path|name)["']?\s*[:=]\s*["']?(?P<value>[A-Za-z_][\w.]*)["']?"""
)


def is_config(path: Path) -> bool:
    """Whether ``path`` is an NVFlare job's server or client config file."""
    return path.stem in CONFIG_STEMS and path.suffix in CONFIG_SUFFIXES


def components(text: str) -> list[tuple[int, str]]:
    """(line, class) of each component class a config names, first mention of each."""
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("#", "//")):
            continue
        for match in _COMPONENT.finditer(line):
            value = match["value"]
            short = value.rsplit(".", 1)[-1]
            if not short[:1].isupper() or (match["key"] == "name" and "." in value):
                continue  # a job or site name, not a class
            found.setdefault(value, number)
    return [(line, cls) for cls, line in found.items()]


def config_problems(text: str) -> list[Problem]:
    """One problem per component class: what Ember has for it, or that it has nothing."""
    problems = []
    for line, cls in components(text):
        advice = COMPONENTS.get(cls.rsplit(".", 1)[-1])
        reason = (
            f"config-based job: {advice}; port the job to a recipe script"
            if advice is not None
            else "config-based job: no Ember recipe or component corresponds"
        )
        problems.append(Problem(line, cls, reason))
    if not problems:
        problems.append(
            Problem(1, "(config)", "config-based job: port it to a recipe script (no components)")
        )
    return problems
