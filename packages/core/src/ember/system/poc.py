"""A proof-of-concept workspace: a server, N clients and an admin on localhost.

``prepare`` makes the project's root CA (``<workspace>/ca``, kept outside every kit) and one
startup kit per participant, with the same certificate code provisioning uses. ``project.json``
at the workspace root lists the participants; daemons run from their own folders.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from ember.errors import EmberError
from ember.provision.certs import make_ca, make_cert
from ember.provision.manifest import sign_kit
from ember.system.kit import Kit

DEFAULT_WORKSPACE = Path("/tmp/ember/poc")
PROJECT_FILE = "project.json"
SERVER = "server"
ADMIN = "admin@ember.local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class PocError(EmberError, ValueError):
    """A PoC workspace cannot be made or used as asked."""


@dataclass(frozen=True)
class PocWorkspace:
    """A prepared PoC workspace."""

    root: Path
    project: str
    server: Kit
    clients: list[Kit]
    admin: Kit

    @property
    def participants(self) -> list[Kit]:
        return [self.server, *self.clients, self.admin]

    @classmethod
    def load(cls, root: str | Path | None = None) -> PocWorkspace:
        root = Path(root or DEFAULT_WORKSPACE).expanduser().resolve()
        path = root / PROJECT_FILE
        if not path.is_file():
            raise PocError(
                f"{root} is not a prepared PoC workspace ({PROJECT_FILE} is missing); run "
                "`ember poc prepare` first"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            root=root,
            project=data["project"],
            server=Kit.load(root / data["server"]),
            clients=[Kit.load(root / c) for c in data["clients"]],
            admin=Kit.load(root / data["admin"]),
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def client_names(num_clients: int, clients: list[str] | None) -> list[str]:
    """``clients`` as given (checked), or ``site-1`` ... ``site-N``."""
    if clients:
        names = [c.strip() for c in clients if c.strip()]
        bad = [n for n in names if not _NAME.match(n) or n in (SERVER, ADMIN)]
        if bad:
            raise PocError(
                f"invalid client names {bad}: use letters, digits, '-' and '_' "
                "(not 'server'), at most 63 characters"
            )
        if len(set(names)) != len(names):
            raise PocError(f"client names repeat: {names}")
        return names
    if num_clients < 1:
        raise PocError(f"a PoC needs at least one client, got -n {num_clients}")
    return [f"site-{i}" for i in range(1, num_clients + 1)]


def prepare(
    workspace: str | Path | None = None,
    num_clients: int = 2,
    clients: list[str] | None = None,
    port: int | None = None,
    project: str = "ember-poc",
    force: bool = False,
) -> PocWorkspace:
    """Make ``workspace`` with a CA and startup kits; refuses to overwrite one unless
    ``force`` (stop its daemons first: ``ember poc clean``)."""
    root = Path(workspace or DEFAULT_WORKSPACE).expanduser().resolve()
    names = client_names(num_clients, clients)
    if root.exists() and any(root.iterdir()):
        if not force:
            raise PocError(
                f"{root} already exists; use it (`ember poc start`), or remove it with "
                "`ember poc clean` (or prepare with --force)"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca(project, root / "ca")
    host = "localhost"
    port = port or free_port()
    kits: list[Kit] = []
    server = Kit(root / SERVER, project, SERVER, "server", host, port)
    make_cert(ca, host, server.startup, kind="server", hosts=[host, "127.0.0.1", "::1"])
    kits.append(server)
    for name in names:
        kit = Kit(root / name, project, name, "client", host, port)
        make_cert(ca, name, kit.startup, kind="client", org=name)
        kits.append(kit)
    admin = Kit(root / ADMIN, project, ADMIN, "admin", host, port, role="project_admin")
    # an admin's certificate states its role (OU) and organisation (O)
    make_cert(ca, ADMIN, admin.startup, kind="project_admin", org="ember", stem="admin")
    kits.append(admin)
    # what provisioning would know of this project: plugins' kit files (ember-edge's gateway
    # certificates, ...) come from the same hook as in `ember provision` (imported here:
    # provision.kits reads YAML, which a PocEnv job script does not need)
    from ember.provision.kits import add_plugin_files
    from ember.provision.project import ClientSpec, Project, ServerSpec

    spec = Project(
        name=project,
        server=ServerSpec(SERVER, host, port),
        clients=tuple(ClientSpec(name, name) for name in names),
    )
    for kit in kits:
        kit.write()
        shutil.copy2(ca.cert, kit.startup / "rootCA.pem")
        add_plugin_files(spec, kit.startup, ca, kit.kind, kit.name)
        sign_kit(kit.startup, kit.name, ca.key)
    (root / PROJECT_FILE).write_text(
        json.dumps(
            {"project": project, "server": SERVER, "clients": names, "admin": ADMIN}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
    return PocWorkspace.load(root)
