"""The project file (YAML): who takes part in a provisioned project, and how they connect.

::

    name: hospitals
    server: {name: fl.example.org, host: 10.0.0.5, port: 8002}   # host: default = name
    connection_security: mtls          # mtls | tls | clear
    sites_allow_custom_code: true      # default for every client
    clients:
      - {name: site-a, org: hospital-a, allow_custom_code: false, max_concurrent_jobs: 2}
    admins:
      - {name: alice@a.org, org: hospital-a, role: lead}

:func:`load_project` checks everything and raises one :class:`ProjectError` listing every
problem, each with its key and how to fix it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ember.errors import EmberError
from ember.provision.policy import ROLES

SECURITY = ("mtls", "tls", "clear")
DEFAULT_MAX_JOBS = 4
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_EMAIL = re.compile(r"^[^@\s/\\:]+@[^@\s/\\:]+$")
_MAX_NAME = 64  # the X.509 upper bound of a common name and of an organisation
RESERVED = ("server",)  # the hub's own node name

_TOP = (
    "name",
    "description",
    "server",
    "connection_security",
    "sites_allow_custom_code",
    "homomorphic_encryption",
    "clients",
    "admins",
)
_SERVER = ("name", "host", "port")
_CLIENT = ("name", "org", "allow_custom_code", "max_concurrent_jobs", "hosts")
_ADMIN = ("name", "org", "role")


class ProjectError(EmberError, ValueError):
    """A project file is missing, unreadable or invalid; the message lists every problem."""


@dataclass(frozen=True)
class ServerSpec:
    """The server: ``name`` is its certificate's name; clients dial ``host:port``."""

    name: str
    host: str
    port: int

    @property
    def hosts(self) -> list[str]:
        """The names the server's certificate is valid for."""
        return list(dict.fromkeys([self.name, self.host]))


@dataclass(frozen=True)
class ClientSpec:
    """A site."""

    name: str
    org: str
    allow_custom_code: bool = True
    max_concurrent_jobs: int = DEFAULT_MAX_JOBS
    hosts: tuple[str, ...] = ()
    """Names (DNS or IP) others reach this site at, for a service it runs itself (such as
    ember-edge's device gateway, whose server certificate is made for them); the site
    dials out to the server and needs none for that."""


@dataclass(frozen=True)
class AdminSpec:
    """A person who uses the admin API, named by e-mail."""

    name: str
    org: str
    role: str


@dataclass(frozen=True)
class Project:
    """A validated project file."""

    name: str
    server: ServerSpec
    connection_security: str = "mtls"
    clients: tuple[ClientSpec, ...] = ()
    admins: tuple[AdminSpec, ...] = ()
    description: str = ""
    sites_allow_custom_code: bool = True
    #: CKKS keys for FedAvgRecipeWithHE in the kits (made by ember-pt[he]'s provisioning hook)
    homomorphic_encryption: bool = False
    source: Path | None = field(default=None, compare=False)

    @property
    def participants(self) -> list[str]:
        return [self.server.name, *(c.name for c in self.clients), *(a.name for a in self.admins)]

    def to_dict(self) -> dict[str, Any]:
        """The project as a project file's data (what :func:`parse_project` reads back)."""
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        server: dict[str, Any] = {"name": self.server.name}
        if self.server.host != self.server.name:
            server["host"] = self.server.host
        server["port"] = self.server.port
        data["server"] = server
        data["connection_security"] = self.connection_security
        data["sites_allow_custom_code"] = self.sites_allow_custom_code
        if self.homomorphic_encryption:
            data["homomorphic_encryption"] = True
        clients = []
        for c in self.clients:
            entry: dict[str, Any] = {"name": c.name, "org": c.org}
            if c.allow_custom_code != self.sites_allow_custom_code:
                entry["allow_custom_code"] = c.allow_custom_code
            if c.max_concurrent_jobs != DEFAULT_MAX_JOBS:
                entry["max_concurrent_jobs"] = c.max_concurrent_jobs
            if c.hosts:
                entry["hosts"] = list(c.hosts)
            clients.append(entry)
        data["clients"] = clients
        data["admins"] = [{"name": a.name, "org": a.org, "role": a.role} for a in self.admins]
        return data

    def dump(self) -> str:
        """The project as YAML text."""
        text: str = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        return text  # (PyYAML has no type hints here)


class _Checker:
    """Collects problems while reading raw YAML data."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def keys(self, where: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                self.add(f"{where}{key}" if where else str(key), f"unknown key; {hint}")

    def text(self, key: str, value: Any, required: bool = True) -> str | None:
        if value is None:
            if required:
                self.add(key, "missing; add it")
            return None
        if not isinstance(value, str):
            self.add(key, f"must be a string, not {value!r}; quote the value in the YAML file")
            return None
        if not value.strip():
            self.add(key, "must not be empty")
            return None
        return value.strip()

    def flag(self, key: str, value: Any, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(key, f"must be true or false, not {value!r}")
            return default
        return value

    def integer(self, key: str, value: Any, low: int, high: int) -> int | None:
        if value is None:
            self.add(key, f"missing; add an integer from {low} to {high}")
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(key, f"must be an integer from {low} to {high}, not {value!r}")
            return None
        return value

    def mapping(self, key: str, value: Any) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.add(key, f"must be a mapping (key: value lines), not {value!r}")
            return None
        return value

    def entries(
        self, key: str, value: Any, shape: str, known: tuple[str, ...]
    ) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(key[i], entry)`` for each mapping in the list ``value`` (None: no entries);
        ``shape`` shows one entry in the error for a value that is not a list."""
        if value is None:
            return
        if not isinstance(value, list):
            self.add(key, f"must be a list of `{shape}` entries")
            return
        for i, raw in enumerate(value):
            where = f"{key}[{i}]"
            if (entry := self.mapping(where, raw)) is not None:
                self.keys(f"{where}.", entry, known)
                yield where, entry

    def org(self, key: str, value: Any) -> str | None:
        org = self.text(key, value)
        if org is not None and len(org) > _MAX_NAME:
            self.add(key, f"{org!r} is longer than {_MAX_NAME} characters")
            return None
        return org


def _host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return len(value) <= 253 and all(_HOST_LABEL.match(p) for p in value.split("."))


def _check_client_name(c: _Checker, key: str, name: str) -> None:
    if "@" in name:
        c.add(key, f"{name!r} holds '@', which marks admins (e-mail names); use a site name")
    elif not _NAME.match(name) or len(name) > 63:
        c.add(
            key,
            f"{name!r} is not a site name: start with a letter or digit, then letters, "
            "digits, '-' or '_' (at most 63 characters)",
        )
    elif name.lower() in RESERVED:
        c.add(key, f"{name!r} is reserved (the server's node name); choose another")


def _check_admin_name(c: _Checker, key: str, name: str) -> None:
    if not _EMAIL.match(name):
        c.add(key, f"{name!r} is not an e-mail address; admins are named by e-mail (a@b.org)")
    elif len(name) > _MAX_NAME:
        c.add(key, f"{name!r} is longer than {_MAX_NAME} characters")


def parse_project(data: Any, source: str | Path | None = None) -> Project:
    """A :class:`Project` from a project file's parsed data; :class:`ProjectError` lists
    every problem."""
    where = f"{source}" if source is not None else "the project"
    c = _Checker()
    top = c.mapping("(top level)", data) if data is not None else None
    if top is None:
        if data is None:
            c.add("(top level)", "the file is empty; start from `ember provision --init`")
        raise ProjectError(_report(where, c.problems))
    c.keys("", top, _TOP)

    name = c.text("name", top.get("name"))
    if name is not None and not _PROJECT.match(name):
        c.add("name", f"{name!r}: use letters, digits, '.', '-' and '_' (it names a folder)")
    description = top.get("description") or ""
    if not isinstance(description, str):
        c.add("description", "must be a string")
        description = ""

    server: ServerSpec | None = None
    raw_server = top.get("server")
    if raw_server is None:
        c.add("server", "missing; add `server: {name: <host name>, port: <port>}`")
    elif (s := c.mapping("server", raw_server)) is not None:
        c.keys("server.", s, _SERVER)
        sname = c.text("server.name", s.get("name"))
        host = c.text("server.host", s.get("host"), required=False) or sname
        port = c.integer("server.port", s.get("port"), 1, 65535)
        for key, value in (("server.name", sname), ("server.host", host)):
            if value is not None and not _host(value):
                c.add(key, f"{value!r} is not a host name or IP address")
        if sname is not None and host is not None and port is not None:
            server = ServerSpec(sname, host, port)

    security = top.get("connection_security", "mtls")
    if security not in SECURITY:
        c.add("connection_security", f"must be one of {', '.join(SECURITY)}, not {security!r}")
    default_code = c.flag("sites_allow_custom_code", top.get("sites_allow_custom_code"), True)
    he = c.flag("homomorphic_encryption", top.get("homomorphic_encryption"), False)

    clients: list[ClientSpec] = []
    raw_clients = top.get("clients") or None
    for key, entry in c.entries("clients", raw_clients, "- {name: ..., org: ...}", _CLIENT):
        cname = c.text(f"{key}.name", entry.get("name"))
        if cname is not None:
            _check_client_name(c, f"{key}.name", cname)
        org = c.org(f"{key}.org", entry.get("org"))
        code = c.flag(f"{key}.allow_custom_code", entry.get("allow_custom_code"), default_code)
        jobs = entry.get("max_concurrent_jobs", DEFAULT_MAX_JOBS)
        jobs = c.integer(f"{key}.max_concurrent_jobs", jobs, 1, 10_000) or DEFAULT_MAX_JOBS
        hosts: list[str] = []
        raw_hosts = entry.get("hosts", [])
        if not isinstance(raw_hosts, list) or not all(isinstance(h, str) for h in raw_hosts):
            c.add(f"{key}.hosts", "must be a list of host names or IP addresses")
        else:
            for host in raw_hosts:
                if _host(host):
                    hosts.append(host)
                else:
                    c.add(f"{key}.hosts", f"{host!r} is not a host name or IP address")
        if cname is not None and org is not None:
            clients.append(ClientSpec(cname, org, code, jobs, tuple(dict.fromkeys(hosts))))

    admins: list[AdminSpec] = []
    raw_admins = top.get("admins") or None
    shape = "- {name: <e-mail>, org: ..., role: ...}"
    for key, entry in c.entries("admins", raw_admins, shape, _ADMIN):
        aname = c.text(f"{key}.name", entry.get("name"))
        if aname is not None:
            _check_admin_name(c, f"{key}.name", aname)
        org = c.org(f"{key}.org", entry.get("org"))
        role = c.text(f"{key}.role", entry.get("role"))
        if role is not None and role not in ROLES:
            close = difflib.get_close_matches(role, ROLES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            c.add(f"{key}.role", f"unknown role {role!r}; {hint}roles are {', '.join(ROLES)}")
        if aname is not None and org is not None and role in ROLES:
            admins.append(AdminSpec(aname, org, str(role)))

    seen: dict[str, str] = {}
    named = [("server.name", server.name if server else None)]
    named += [
        (f"clients[{i}].name", x.get("name"))
        for i, x in enumerate(raw_clients if isinstance(raw_clients, list) else [])
        if isinstance(x, Mapping)
    ]
    named += [
        (f"admins[{i}].name", x.get("name"))
        for i, x in enumerate(raw_admins if isinstance(raw_admins, list) else [])
        if isinstance(x, Mapping)
    ]
    for key, value in named:
        if not isinstance(value, str):
            continue
        folded = value.strip().lower()  # folder names must differ on case-insensitive disks
        if folded in seen:
            c.add(key, f"{value!r} is already taken by {seen[folded]}; names must be unique")
        else:
            seen[folded] = key

    if c.problems or name is None or server is None:
        raise ProjectError(_report(where, c.problems))
    return Project(
        name=name,
        server=server,
        connection_security=str(security),
        clients=tuple(clients),
        admins=tuple(admins),
        description=description,
        sites_allow_custom_code=default_code,
        homomorphic_encryption=he,
        source=Path(source) if source is not None else None,
    )


def _report(where: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where} has {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def load_project(path: str | Path) -> Project:
    """Read and validate the project file at ``path``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProjectError(
            f"{path}: no such project file; write a sample with `ember provision --init`"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {exc}") from None
    return parse_project(data, path)


SAMPLE_PROJECT = """\
# An Ember project: who takes part, and how they connect.
# Provision it:   ember provision -p project.yml -w workspace
# Each participant gets a startup kit in workspace/<name>/prod_NN/<participant>/startup/;
# the project's root CA stays in workspace/<name>/state/ (keep it safe, never ship it).
name: example-project
# description: free text

# The server. `name` is its host name and the name on its certificate; clients dial `host`
# (default: name) on `port`. Clients only dial out: open this one port on the server.
server:
  name: localhost
  # host: 10.0.0.5
  port: 8002

# mtls (default): every party shows a certificate signed by the project's CA.
# tls: only the server does. clear: no encryption (for tests on one machine only).
connection_security: mtls

# May jobs bring their own Python code to a site? The default for every client; a client
# overrides it with allow_custom_code. A site without it runs only files whose SHA-256 it
# lists in its resources.json (trusted_code_sha256).
sites_allow_custom_code: true

# CKKS keys for FedAvgRecipeWithHE (needs ember-pt[he]): clients' kits get the secret
# context, the server's only the public one.
# homomorphic_encryption: true

# Sites: a name (letters, digits, '-' and '_') and the organisation running it.
clients:
  - name: site-1
    org: org-a
  - name: site-2
    org: org-b
    # allow_custom_code: false
    # max_concurrent_jobs: 4
    # hosts: [edge.org-b.example]   # names devices reach its ember-edge gateway at

# People who use the admin API, named by e-mail, each with an organisation and a role:
#   project_admin  everything, including operating the system (status, shutdown)
#   org_admin      manages and downloads its organisation's jobs; submits none
#   lead           submits jobs; manages and downloads its own
#   member         views jobs and the system
# Add people and sites later without touching other kits:
#   ember provision -w workspace --add-client NAME --org ORG
#   ember provision -w workspace --add-admin E-MAIL --org ORG --role ROLE
admins:
  - name: admin@org-a.example
    org: org-a
    role: project_admin
  - name: lead@org-a.example
    org: org-a
    role: lead
  - name: member@org-b.example
    org: org-b
    role: member
"""


def write_sample(path: str | Path) -> Path:
    """Write :data:`SAMPLE_PROJECT` to ``path``; refuses to overwrite a file."""
    path = Path(path).expanduser()
    if path.exists():
        raise ProjectError(f"{path} already exists; remove it or pick another path with -p")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SAMPLE_PROJECT, encoding="utf-8")
    return path
