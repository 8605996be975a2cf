"""A site's side of a private set intersection: its ids, its key, its answers.

``DhPSIRecipe`` bundles a two-line site script (``app/psi_site.py``) that calls
:func:`run_site` with the job's site settings (``app/psi_site.json``: the loader as
``{"path": "module.Class", "args": {...}}`` and ``output_path``). The script is the same
bytes in every job, so a site that runs no custom code can trust its hash once.

The site answers three steps of the server's ``psi`` task (:mod:`ember.psi.controller`):

- ``prepare`` (with the session's id and salt): load the ids, refuse duplicates, make a
  fresh key, shuffle the ids, hash each onto the curve and blind it; send the blinded list
  (its length is the one thing it tells about the ids);
- ``blind`` (another site's list, blinded by that site and maybe others): blind each value
  with this site's key, keeping the order; send it back;
- ``intersect`` (positions in this site's own shuffled list whose fully blinded values
  every site has): map them back to ids and write them, sorted, one per line, to
  ``output_path`` under the site's job workspace.

What a site receives is the salt, other sites' lists (each blinded by at least its
owner's key, which never leaves the owner) and positions in its own list: no id of
another site, nor anything computed from one without that site's key.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from ember.plugins.entries import load_dotted
from ember.plugins.errors import PluginError
from ember.psi.crypto import SALT_BYTES, Blinder, PSICryptoError, check_values
from ember.psi.loader import PSIContext, PSIDataLoader, PSIError, check_items

#: the task's name and the keys of its meta (the step, the session, the salt)
TASK = "psi"
STEP = "psi_step"
PREPARE, BLIND, INTERSECT = "prepare", "blind", "intersect"
SESSION = "psi_session"
SALT = "psi_salt"
SITES = "psi_sites"
#: result meta: the number of values sent (prepare, blind) or ids written (intersect)
SIZE = "psi_size"
#: params: a ``(n, 32)`` uint8 array of blinded values; positions (int64) in a site's list
VALUES = "blinded"
POSITIONS = "positions"
#: where the intersection goes, relative to the site's job workspace (NVFlare's default)
DEFAULT_OUTPUT_PATH = "psi/intersection.txt"


def load_loader(path: str, args: dict[str, Any]) -> PSIDataLoader:
    """The loader ``module.Class(**args)``."""
    try:
        cls = load_dotted(path)
    except PluginError as exc:
        raise PSIError(f"cannot load the PSI loader {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, PSIDataLoader)):
        raise PSIError(f"the PSI loader {path!r} is not a subclass of ember.psi.PSIDataLoader")
    loader: PSIDataLoader = cls(**args)
    return loader


def output_file(workspace: Path, output_path: str) -> Path:
    """Where a site writes its intersection: ``output_path`` under its job workspace."""
    return Path(workspace) / output_path


class PSISite:
    """One site's state through one session: its shuffled ids and its key.

    :meth:`answer` takes a task's meta and params and returns the result's
    ``(meta, params)``."""

    def __init__(self, site: str, loader: PSIDataLoader, ctx: PSIContext, output_path: str) -> None:
        self.site = site
        self.loader = loader
        self.ctx = ctx
        self.output = output_file(ctx.workspace, output_path)
        self.session: str | None = None
        self.items: list[str] = []  # in this session's shuffled order
        self.blinder: Blinder | None = None
        self.written: list[str] | None = None

    def answer(
        self, meta: dict[str, Any], params: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        step = meta.get(STEP)
        if step == PREPARE:
            return self._prepare(meta)
        session = meta.get(SESSION)
        if self.blinder is None or session != self.session:
            raise PSIError(
                f"{self.site} got a PSI {step!r} step for session {session!r} before preparing "
                f"it (its session: {self.session!r}): the server's steps are out of order"
            )
        if step == BLIND:
            values = self._values(params.get(VALUES))
            try:
                blinded = self.blinder.blind(values)
            except PSICryptoError as exc:
                raise PSIError(f"{self.site} cannot blind the list it was sent: {exc}") from None
            return {SIZE: len(blinded)}, {VALUES: blinded}
        if step == INTERSECT:
            return self._intersect(params.get(POSITIONS)), {}
        raise PSIError(
            f"{self.site} got a task with PSI step {step!r}: this script answers "
            f"DhPSIRecipe's controller only (steps {PREPARE}, {BLIND}, {INTERSECT})"
        )

    def _prepare(self, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        session, salt_hex = meta.get(SESSION), meta.get(SALT)
        try:
            salt = bytes.fromhex(salt_hex) if isinstance(salt_hex, str) else b""
        except ValueError:
            salt = b""
        if not isinstance(session, str) or len(salt) != SALT_BYTES:
            raise PSIError(
                f"{self.site} got a PSI prepare step without a session id and a "
                f"{SALT_BYTES}-byte salt (hex): is the server running DhPSIRecipe's controller?"
            )
        self.loader.initialize(self.ctx)
        items = check_items(self.site, self.loader.load_items())
        secrets.SystemRandom().shuffle(items)  # positions say nothing of the loader's order
        self.session, self.items = session, items
        self.blinder = Blinder()  # a fresh key for every session
        self.written = None
        blinded = self.blinder.blind_items(salt, items)
        return {SIZE: len(items)}, {VALUES: blinded}

    def _values(self, values: Any) -> np.ndarray:
        try:
            return check_values(values)
        except PSICryptoError as exc:
            raise PSIError(f"{self.site} got a PSI blind step without a list: {exc}") from None

    def _intersect(self, positions: Any) -> dict[str, Any]:
        if (
            not isinstance(positions, np.ndarray)
            or positions.ndim != 1
            or positions.dtype.kind not in "iu"
        ):
            raise PSIError(
                f"{self.site} got a PSI intersect step without an integer array of positions"
            )
        index = positions.astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self.items)):
            raise PSIError(
                f"{self.site} got positions outside its {len(self.items)} ids: the server "
                "mixed up the sites' lists"
            )
        if len(np.unique(index)) != len(index):
            raise PSIError(f"{self.site} got repeated positions in the PSI intersect step")
        ids = sorted(self.items[int(i)] for i in index)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{item}\n" for item in ids)
        self.output.write_text(text, encoding="utf-8")
        self.written = ids
        return {SIZE: len(ids)}


def run_site(settings: str | Path) -> None:
    """The site script's body: answer the server's PSI steps until the job ends.

    ``settings`` is the job's ``psi_site.json`` (``{"local_psi": {"path", "args"},
    "output_path": "psi/intersection.txt"}``)."""
    import ember.client as flare

    data = json.loads(Path(settings).read_text(encoding="utf-8"))
    flare.init()
    site = flare.get_site_name()
    workspace = Path(flare.get_config().get("workspace") or ".")
    spec = data["local_psi"]
    loader = load_loader(spec["path"], dict(spec.get("args") or {}))
    ctx = PSIContext(site_name=site, job_id=flare.get_job_id(), workspace=workspace)
    state = PSISite(site, loader, ctx, data.get("output_path", DEFAULT_OUTPUT_PATH))
    while flare.is_running():
        task = flare.receive()
        if task is None:
            break
        meta, params = state.answer(dict(task.meta or {}), dict(task.params or {}))
        flare.send(flare.FLModel(params=params, meta=meta))
