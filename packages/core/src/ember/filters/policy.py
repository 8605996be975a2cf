"""A site's privacy policy: filters the site always applies, whatever the job says.

The policy is the site's own file, beside its startup kit (NVFlare keeps its privacy
policy in the site's ``local/`` folder too), so the site's admin edits it without
reprovisioning::

    <site folder>/local/privacy.json
    {"format": 1,
     "filters": [
       {"direction": "output", "name": "ExcludeVars", "args": {"exclude_vars": "^private\\."}},
       {"direction": "output", "name": "GaussianPrivacy",
        "args": {"noise_multiplier": 1.0, "clip_norm": 1.0}, "tasks": ["train"]}]}

Each entry is a filter spec (``name`` of a registered filter type or ``path`` of a class,
``args``, ``direction`` ``input``/``output``, optional ``tasks``); ``side`` is always
``client``. ``$EMBER_PRIVACY_POLICY_DIR/<site>.json`` (same format) is read too, for SimEnv.
The site's job process appends these specs after the job's: a job's filters run first on
the way out and the policy's last, so a job can add filtering but never undo the site's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ember.filters.base import CLIENT, FilterError
from ember.filters.chain import build_filter, check_spec

POLICY_FILE = "privacy.json"
POLICY_DIR_ENV = "EMBER_PRIVACY_POLICY_DIR"
POLICY_FORMAT = 1


def policy_files(
    site: str, site_folder: Path | None, environ: dict[str, str] | None = None
) -> list[Path]:
    """The policy files of ``site`` that exist: ``<site folder>/local/privacy.json``, then
    ``$EMBER_PRIVACY_POLICY_DIR/<site>.json``."""
    env = os.environ if environ is None else environ
    found = []
    if site_folder is not None and (Path(site_folder) / "local" / POLICY_FILE).is_file():
        found.append(Path(site_folder) / "local" / POLICY_FILE)
    if env.get(POLICY_DIR_ENV):
        path = Path(env[POLICY_DIR_ENV]) / f"{site}.json"
        if path.is_file():
            found.append(path)
    return found


def read_policy(path: Path) -> list[dict[str, Any]]:
    """The filter specs of one policy file, checked (each filter is built once, so bad
    arguments fail when the job starts at this site, naming the file)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FilterError(f"site privacy policy {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != POLICY_FORMAT:
        raise FilterError(
            f'site privacy policy {path} must be an object with "format": {POLICY_FORMAT} '
            'and "filters": [...]'
        )
    extra = sorted(set(data) - {"format", "filters"})
    if extra or not isinstance(data.get("filters", []), list):
        raise FilterError(
            f'site privacy policy {path}: it takes "format" and a "filters" list'
            + (f"; unknown keys {extra}" if extra else "")
        )
    specs = []
    for i, entry in enumerate(data.get("filters", [])):
        where = f"site privacy policy {path}, filter {i}"
        if not isinstance(entry, dict):
            raise FilterError(f"{where} must be an object, got {entry!r}")
        if entry.get("side", CLIENT) != CLIENT:
            raise FilterError(f"{where}: a site policy's filters run at the site (side 'client')")
        if "clients" in entry:
            raise FilterError(f"{where}: a site policy applies to its own site; drop 'clients'")
        spec = check_spec({**entry, "side": CLIENT, "origin": "site"}, where)
        try:
            build_filter(spec)
        except FilterError as exc:
            raise FilterError(f"{where}: {exc}") from None
        specs.append(spec)
    return specs


def site_policy(
    site: str, site_folder: Path | None, environ: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every filter spec the site's policy files name, in order."""
    specs: list[dict[str, Any]] = []
    for path in policy_files(site, site_folder, environ):
        specs += read_policy(path)
    return specs
