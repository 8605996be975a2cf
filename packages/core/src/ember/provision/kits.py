"""Startup kits for every participant of a project file, signed by the project's root CA.

Layout (one folder per project in the workspace)::

    <workspace>/<project>/
      state/                  rootCA.pem, rootCA.key (0600), project.yml: in no kit, ever
      prod_00/                the first full provisioning; each later one adds prod_01, ...
        <server name>/startup/   rootCA.pem server.crt server.key kit.json
                                 authorization.json start.sh stop.sh manifest.json manifest.sig
        <client>/startup/        rootCA.pem client.crt client.key kit.json authorization.json
                                 resources.json start.sh stop.sh manifest.json manifest.sig
        <admin e-mail>/startup/  rootCA.pem admin.crt admin.key kit.json
                                 manifest.json manifest.sig

The root CA is made once per project and reused by every later provisioning and by
:func:`add_participant`, so adding a site never invalidates the kits already handed out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ember.errors import EmberError
from ember.provision.certs import CertFiles, make_ca, make_cert
from ember.provision.manifest import sign_kit
from ember.provision.policy import default_policy
from ember.provision.project import (
    DEFAULT_MAX_JOBS,
    AdminSpec,
    ClientSpec,
    Project,
    ProjectError,
    load_project,
    parse_project,
)

STATE = "state"
PROJECT_COPY = "project.yml"
STARTUP = "startup"
_PROD = re.compile(r"^prod_(\d{2,})$")


class ProvisionError(EmberError, ValueError):
    """Provisioning cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ProvisionResult:
    """What a provisioning wrote: ``participants`` maps each participant written by this
    call to its folder (the one holding ``startup/``)."""

    project: Project
    root: Path  # <workspace>/<project>
    prod: Path  # the prod_NN folder the kits are in
    ca: CertFiles  # in root/state
    new_ca: bool  # False when the project's existing root CA was reused
    participants: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project.name,
            "root": str(self.root),
            "prod": str(self.prod),
            "ca": str(self.ca.cert),
            "new_ca": self.new_ca,
            "participants": {name: str(path) for name, path in self.participants.items()},
            "warnings": self.warnings,
        }


def _script(action: str, kind: str, name: str, project: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# {action.capitalize()} the Ember {kind} daemon {name!r} of project {project!r}, "
        "from this startup kit.\n"
        "# EMBER: the ember command to run (default: `ember` on PATH).\n"
        "set -e\n"
        'kit="$(cd "$(dirname "$0")/.." && pwd)"\n'
        f'exec "${{EMBER:-ember}}" daemon {action} --kit "$kit" "$@"\n'
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_kit(
    project: Project,
    ca: CertFiles,
    folder: Path,
    participant: ClientSpec | AdminSpec | None,
) -> None:
    """One participant's ``folder/startup`` (``participant`` None: the server)."""
    startup = folder / STARTUP
    startup.mkdir(parents=True)
    server = project.server
    kit: dict[str, Any] = {
        "project": project.name,
        "host": server.host,
        "port": server.port,
        "role": None,
        "org": None,
        "connection_security": project.connection_security,
    }
    if participant is None:
        kit.update(name=server.name, kind="server")
        make_cert(ca, server.name, startup, kind="server", hosts=server.hosts)
    elif isinstance(participant, ClientSpec):
        kit.update(name=participant.name, kind="client", org=participant.org)
        make_cert(ca, participant.name, startup, kind="client", org=participant.org)
    else:
        kit.update(name=participant.name, kind="admin", role=participant.role, org=participant.org)
        # an admin's certificate states its role (OU) and organisation (O)
        make_cert(
            ca, participant.name, startup, kind=participant.role, org=participant.org, stem="admin"
        )
    order = ("project", "name", "kind", "host", "port", "role", "org", "connection_security")
    _write_json(startup / "kit.json", {k: kit[k] for k in order})
    shutil.copyfile(ca.cert, startup / "rootCA.pem")
    if not isinstance(participant, AdminSpec):
        _write_json(startup / "authorization.json", default_policy())
        for action in ("start", "stop"):
            path = startup / f"{action}.sh"
            path.write_text(_script(action, kit["kind"], kit["name"], project.name))
            path.chmod(0o755)
    if isinstance(participant, ClientSpec):
        _write_json(
            startup / "resources.json",
            {
                "max_concurrent_jobs": participant.max_concurrent_jobs,
                "allow_custom_code": participant.allow_custom_code,
                "trusted_code_sha256": [],
            },
        )
    add_plugin_files(project, startup, ca, kit["kind"], kit["name"])
    sign_kit(startup, kit["name"], ca.key)


def add_plugin_files(
    project: Project, startup: Path, ca: CertFiles, kind: str, name: str
) -> None:
    """The files plugins add to a kit (hook ``ember_provision_kit_files``), before signing
    (``ember provision`` and ``ember poc prepare``)."""
    from ember.plugins import get_plugin_manager

    state = ca.key.parent  # the project's state/ folder

    def issue_certificate(common_name: str, hosts: list[str]) -> tuple[bytes, bytes]:
        if not hosts:
            raise ProvisionError(f"a plugin asked for a server certificate of {name} for no host")
        with tempfile.TemporaryDirectory() as tmp:
            made = make_cert(ca, common_name, Path(tmp), kind="service", hosts=list(hosts))
            return made.cert.read_bytes(), made.key.read_bytes()

    added = get_plugin_manager().hook.ember_provision_kit_files(
        project=project, state=state, kind=kind, name=name, issue_certificate=issue_certificate
    )
    if project.homomorphic_encryption and kind == "server" and not any(added):
        raise ProvisionError(
            "the project sets homomorphic_encryption: true, but no installed plugin makes HE "
            "keys; install ember-pt[he] (`pip install ember-pt[he]`) and provision again"
        )
    for files in added:
        for file_name, data in (files or {}).items():
            if Path(file_name).name != file_name or (startup / file_name).exists():
                raise ProvisionError(
                    f"a plugin's kit file {file_name!r} for {name} is not a new plain file "
                    "name in startup/; fix or disable that plugin"
                )
            path = startup / file_name
            path.write_bytes(data)
            path.chmod(0o600)


def _prods(root: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in root.glob("prod_*") if (m := _PROD.match(p.name))]
    return sorted(p for p in found if p[1].is_dir())


def _ca(state: Path, project: str) -> tuple[CertFiles, bool]:
    """The project's root CA in ``state``: the existing one, or a new one when there is
    none at all."""
    ca = CertFiles(state / "rootCA.pem", state / "rootCA.key")
    if ca.cert.is_file() and ca.key.is_file():
        return ca, False
    if ca.cert.exists() or ca.key.exists():
        missing = ca.key if ca.cert.exists() else ca.cert
        raise ProvisionError(
            f"{missing} is missing while its pair is there; restore it from your backup. A new "
            "root CA would invalidate every kit already handed out, so none is made"
        )
    return make_ca(project, state), True


def provision(project_file: str | Path, workspace: str | Path) -> ProvisionResult:
    """Kits for every participant of ``project_file`` in a new
    ``<workspace>/<project>/prod_NN/``, signed by the project's root CA (made on the first
    provisioning, reused after)."""
    project = load_project(project_file)
    root = Path(workspace).expanduser().resolve() / project.name
    state = root / STATE
    ca, new_ca = _ca(state, project.name)
    prods = _prods(root)
    prod = root / f"prod_{(prods[-1][0] + 1) if prods else 0:02d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{prod.name}-", dir=root))
    try:
        participants: dict[str, Path] = {}
        specs: list[ClientSpec | AdminSpec | None] = [None, *project.clients, *project.admins]
        for spec in specs:
            name = project.server.name if spec is None else spec.name
            _write_kit(project, ca, tmp / name, spec)
            participants[name] = prod / name
        tmp.chmod(0o755)
        os.replace(tmp, prod)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    warnings = []
    stored = state / PROJECT_COPY
    if stored.is_file() and Path(project_file).resolve() != stored.resolve():
        dropped = [p for p in load_project(stored).participants if p not in project.participants]
        if dropped:
            warnings.append(
                f"{', '.join(dropped)} (in the last provisioned project, {stored}) are not in "
                f"{project_file}, so {prod.name} has no kits for them; their existing kits stay "
                "valid. Add them to the project file (or provision from the stored one) to keep "
                "them"
            )
    if Path(project_file).resolve() != stored.resolve():
        shutil.copyfile(project_file, stored)
    return ProvisionResult(project, root, prod, ca, new_ca, participants, warnings)


def add_participant(
    workspace: str | Path,
    project: str,
    *,
    client: str | None = None,
    admin: str | None = None,
    org: str | None = None,
    role: str | None = None,
    allow_custom_code: bool | None = None,
    max_concurrent_jobs: int | None = None,
) -> ProvisionResult:
    """Add one client (``org`` defaults to its name) or admin (``org`` and ``role``
    required) to the provisioned ``project``: its kit is signed by the project's existing
    root CA and written beside the others in the latest ``prod_NN``; the stored project file
    (``state/project.yml``) gains the entry. Other kits are not touched."""
    if (client is None) == (admin is None):
        raise ProvisionError("add exactly one participant: a client or an admin")
    root = Path(workspace).expanduser().resolve() / project
    state = root / STATE
    ca = CertFiles(state / "rootCA.pem", state / "rootCA.key")
    stored = state / PROJECT_COPY
    prods = _prods(root)
    if not (ca.cert.is_file() and ca.key.is_file() and stored.is_file() and prods):
        raise ProvisionError(
            f"{root} holds no provisioned project {project!r} (with its CA in {STATE}/); "
            "provision it first: `ember provision -p project.yml`"
        )
    current = load_project(stored)
    data = current.to_dict()
    entry: dict[str, Any]
    if client is not None:
        entry = {"name": client, "org": org or client}
        if allow_custom_code is not None:
            entry["allow_custom_code"] = allow_custom_code
        if max_concurrent_jobs not in (None, DEFAULT_MAX_JOBS):
            entry["max_concurrent_jobs"] = max_concurrent_jobs
        data["clients"].append(entry)
        key = f"clients[{len(data['clients']) - 1}]"
    else:
        if not org or not role:
            raise ProvisionError(f"an admin needs an --org and a --role (adding {admin!r})")
        entry = {"name": admin, "org": org, "role": role}
        data["admins"].append(entry)
        key = f"admins[{len(data['admins']) - 1}]"
    try:
        updated = parse_project(data, f"adding {entry['name']!r} to {stored}")
    except ProjectError as exc:
        raise ProvisionError(str(exc).replace(f"{key}.", "").replace(key, "entry")) from None
    spec = (updated.clients if client is not None else updated.admins)[-1]
    prod = prods[-1][1]
    folder = prod / spec.name
    if folder.exists():
        raise ProvisionError(f"{folder} already exists; remove it to provision it again")
    tmp = Path(tempfile.mkdtemp(prefix=".add-", dir=prod))
    try:
        _write_kit(updated, ca, tmp / spec.name, spec)
        os.replace(tmp / spec.name, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    new_text = updated.dump()
    stored.write_text(
        "# the project as provisioned (kept by `ember provision`; entries added with "
        "--add-client/--add-admin)\n" + new_text,
        encoding="utf-8",
    )
    updated = replace(updated, source=stored)
    return ProvisionResult(updated, root, prod, ca, False, {spec.name: folder})
