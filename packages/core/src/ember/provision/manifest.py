"""Signed kit manifests: a kit whose files were altered, removed or added is detected.

``startup/manifest.json`` lists the participant and the SHA-256 of every other file in
``startup/``; ``startup/manifest.sig`` is an ECDSA (SHA-256) signature of manifest.json's
exact bytes by the project's root CA key, base64-encoded. :func:`verify_kit` checks the
signature against the kit's own ``rootCA.pem`` (the certificate every connection of the kit
is verified against) and every hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ember.errors import EmberError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ROOT_CA = "rootCA.pem"
MANIFEST_FORMAT = 1


class KitError(EmberError, ValueError):
    """A startup kit is missing or malformed."""


class KitTamperedError(KitError):
    """A startup kit's files do not match its signed manifest (or the signature is bad)."""


def _files(startup: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file under ``startup`` but the manifest's own."""
    out: dict[str, str] = {}
    for path in sorted(startup.rglob("*")):
        rel = path.relative_to(startup).as_posix()
        if rel in (MANIFEST, SIGNATURE) or path.is_dir():
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def sign_kit(startup: Path, participant: str, ca_key: Path) -> None:
    """Write ``manifest.json`` and ``manifest.sig`` for the files now in ``startup``."""
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key} is not an EC private key made by make_ca")
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "participant": participant,
        "algorithm": "ecdsa-sha256",
        "files": _files(startup),
    }
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (startup / MANIFEST).write_bytes(body)
    signature = key.sign(body, ec.ECDSA(hashes.SHA256()))
    (startup / SIGNATURE).write_bytes(base64.b64encode(signature) + b"\n")


def verify_kit(startup_dir: str | Path) -> None:
    """Raise :class:`KitTamperedError` unless the kit in ``startup_dir`` (a ``startup``
    folder, or the participant folder above it) is exactly as provisioned."""
    startup = Path(startup_dir)
    if startup.name != "startup" and (startup / "startup").is_dir():
        startup = startup / "startup"
    fix = "get a fresh kit from the project admin (`ember provision`)"
    for name in (MANIFEST, SIGNATURE, ROOT_CA):
        if not (startup / name).is_file():
            raise KitTamperedError(f"the startup kit in {startup} lacks {name}; {fix}")
    body = (startup / MANIFEST).read_bytes()
    try:
        ca = x509.load_pem_x509_certificate((startup / ROOT_CA).read_bytes())
        signature = base64.b64decode((startup / SIGNATURE).read_bytes().strip(), validate=True)
        public = ca.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ValueError("the root CA's key is not an EC key")
        public.verify(signature, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise KitTamperedError(
            f"the startup kit in {startup} has a bad signature: {MANIFEST} is not signed by "
            f"the project CA in {ROOT_CA}{detail}; {fix}"
        ) from None
    manifest = json.loads(body)
    expected: dict[str, str] = manifest.get("files", {})
    actual = _files(startup)
    problems = [f"{n} was altered" for n in expected if n in actual and actual[n] != expected[n]]
    problems += [f"{n} is missing" for n in expected if n not in actual]
    problems += [f"{n} was added" for n in actual if n not in expected]
    kit_file = startup / "kit.json"
    if not problems and kit_file.is_file():
        named = json.loads(kit_file.read_text(encoding="utf-8")).get("name")
        if named != manifest.get("participant"):
            problems.append(
                f"kit.json names {named!r}, the manifest {manifest.get('participant')!r}"
            )
    if problems:
        raise KitTamperedError(
            f"the startup kit of {manifest.get('participant')!r} in {startup} does not match "
            f"its signed manifest: {'; '.join(problems)}; {fix}"
        )
