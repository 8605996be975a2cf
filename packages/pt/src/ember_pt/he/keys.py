"""Where HE FedAvg's keys live, and making them.

- ``ember provision`` (with ember-pt[he] installed) writes the project's key pair into the
  kits: every client's ``startup/`` gets ``he_context.tenseal`` (with the secret key) and
  ``he_public_context.tenseal``; the server's gets only ``he_public_context.tenseal``. The
  pair is kept in the project's ``state/`` (beside its root CA), so later provisionings and
  added clients get the same pair.
- SimEnv: ``FedAvgRecipeWithHE`` makes a throw-away pair per job; the job carries the public
  context (``app/he_public_context.tenseal``), and the secret one is put in a private temporary
  folder named by ``$EMBER_HE_KEYS`` (``<key id>.tenseal``), where the sites look first.
- PocEnv: the same, the secret context written to each client's ``local/he_keys/`` (never
  the server's folder).

A site finds its secret context by the key id written in every encrypted layer: in
``$EMBER_HE_KEYS``, then in ``local/he_keys/`` or the kit of the site folder above its working
folder, its process's arguments or its training script. The server loads only a public
context, and refuses one holding a secret key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tenseal as ts

from ember_pt.he.ckks import HEError, key_id, load_context, new_key_pair

SECRET_FILE = "he_context.tenseal"
PUBLIC_FILE = "he_public_context.tenseal"
KEYS_ENV = "EMBER_HE_KEYS"
STATE_SECRET = "he_context.tenseal"

_SECRET_CACHE: dict[str, ts.Context] = {}


def kit_files(state: Path, kind: str) -> dict[str, bytes]:
    """The files a participant's ``startup/`` gets (``kind``: server, client or admin), from
    the project's pair in ``state`` (made on first use)."""
    if kind not in ("server", "client"):
        return {}
    secret_path = state / STATE_SECRET
    if secret_path.is_file():
        secret = secret_path.read_bytes()
        context = load_context(secret, secret=True, source=str(secret_path))
        from ember_pt.he.ckks import serialize_context

        public = serialize_context(context, secret=False)
    else:
        secret, public, _ = new_key_pair()
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
    if kind == "server":
        return {PUBLIC_FILE: public}
    return {SECRET_FILE: secret, PUBLIC_FILE: public}


def throwaway_keys() -> tuple[Path, bytes, str]:
    """A new pair for one job: the secret context written to ``$EMBER_HE_KEYS`` (a private
    temporary folder made now when unset) as ``<key id>.tenseal``; returns that folder, the
    public context's bytes and the key id."""
    secret, public, kid = new_key_pair()
    folder = os.environ.get(KEYS_ENV)
    if not folder:
        folder = tempfile.mkdtemp(prefix="ember-he-keys-")
        os.environ[KEYS_ENV] = folder
    path = Path(folder) / f"{kid}.tenseal"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    return Path(folder), public, kid


def _kit_startups(start: Path) -> list[Path]:
    return [p / "startup" for p in [start, *start.parents] if (p / "startup").is_dir()]


def secret_context(kid: str, cwd: Path | None = None) -> ts.Context:
    """The secret context of key ``kid`` (cached): ``$EMBER_HE_KEYS/<kid>.tenseal``, else
    the kit above ``cwd`` whose public context has that id."""
    if kid in _SECRET_CACHE:
        return _SECRET_CACHE[kid]
    searched = []
    folder = os.environ.get(KEYS_ENV)
    if folder:
        path = Path(folder) / f"{kid}.tenseal"
        searched.append(str(path))
        if path.is_file():
            return _cache(kid, path)
    starts = [cwd.resolve()] if cwd is not None else _site_places()
    for start in starts:
        for parent in [start, *start.parents]:  # PocEnv: the job's keys in the site's local/
            path = parent / "local" / "he_keys" / f"{kid}.tenseal"
            if path.is_file():
                return _cache(kid, path)
    for startup in [s for start in starts for s in _kit_startups(start)]:
        public = startup / PUBLIC_FILE
        searched.append(str(startup / SECRET_FILE))
        found = (startup / SECRET_FILE).is_file() and public.is_file()
        if found and key_id(public.read_bytes()) == kid:
            return _cache(kid, startup / SECRET_FILE)
    raise HEError(
        f"no secret HE context for key {kid} (looked in {', '.join(searched) or 'nothing'}); "
        "a site needs the kit `ember provision` made with ember-pt[he] installed "
        "(startup/he_context.tenseal), or, in SimEnv, the job's throw-away keys in "
        f"${KEYS_ENV}"
    )


def _site_places() -> list[Path]:
    """Where this site's folder may be above: the working folder, the paths the process was
    started with (a site daemon's or job process's folder) and the files of the running code
    (a training script in the site's job folder)."""
    import inspect
    import sys

    places = [Path.cwd().resolve()]
    for arg in sys.argv:
        if os.path.isabs(arg) and os.path.exists(arg):
            places.append(Path(arg).resolve())
    for frame in inspect.stack(context=0):
        if os.path.isabs(frame.filename) and "jobs" in Path(frame.filename).parts:
            places.append(Path(frame.filename).resolve().parent)
    return list(dict.fromkeys(places))


def _cache(kid: str, path: Path) -> ts.Context:
    context = load_context(path.read_bytes(), secret=True, source=str(path))
    _SECRET_CACHE[kid] = context
    return context


def public_context(job_file: Path | None, start: Path) -> tuple[ts.Context, str, Path]:
    """The server's public context: the server kit's ``startup/he_public_context.tenseal``
    above ``start`` (provisioned), else the job's own (``job_file``, throw-away keys).
    Refuses a context holding a secret key. Returns the context, its key id and its file."""
    candidates = [s / PUBLIC_FILE for s in _kit_startups(start.resolve())]
    if job_file is not None:  # the job's throw-away keys, where no kit has provisioned ones
        candidates.append(job_file)
    for path in candidates:
        if path.is_file():
            data = path.read_bytes()
            return load_context(data, secret=False, source=str(path)), key_id(data), path
    raise HEError(
        f"no public HE context for the server (no {job_file} in the job, no "
        f"startup/{PUBLIC_FILE} in a kit above {start}); provision the project with "
        "ember-pt[he] installed (`pip install ember-pt[he]`, then `ember provision`), or run "
        "FedAvgRecipeWithHE in SimEnv, which makes throw-away keys"
    )
