"""Startup kits: what each participant needs to join a project, in ``<folder>/startup/``.

A kit holds the project's root CA certificate (``rootCA.pem``), the participant's own
certificate and key, ``kit.json`` (the project, the participant's name, kind — ``server``,
``client`` or ``admin`` — role and org, the server's address, the connection security) and a
manifest of every file's hash signed by the project CA: a kit whose files were altered,
removed or added refuses to load (:func:`ember.provision.manifest.verify_kit`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ember.net import TlsFiles
from ember.provision.manifest import KitError

STARTUP = "startup"
KIT_FILE = "kit.json"


@dataclass(frozen=True)
class Kit:
    """A participant's startup kit."""

    folder: Path  # the participant's folder; the kit is in folder/startup
    project: str
    name: str
    kind: str  # server | client | admin
    host: str  # the server's host name (its certificate's name)
    port: int
    role: str | None = None  # an admin's role
    org: str | None = None
    connection_security: str = "mtls"  # mtls | tls | clear (the project's choice)

    @property
    def startup(self) -> Path:
        return self.folder / STARTUP

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bind_host(self) -> str:
        """Where the server listens: its own name when that is a loopback name, else every
        interface."""
        return self.host if self.host in ("localhost", "127.0.0.1", "::1") else "::"

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(
            self.startup / "rootCA.pem",
            self.startup / f"{self.kind}.crt",
            self.startup / f"{self.kind}.key",
            security=self.connection_security,  # type: ignore[arg-type]
        )

    def write(self) -> None:
        data = asdict(self)
        del data["folder"]
        self.startup.mkdir(parents=True, exist_ok=True)
        (self.startup / KIT_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> Kit:
        """The kit in ``folder`` (a participant folder, or its ``startup`` folder)."""
        folder = Path(folder).expanduser().resolve()
        if folder.name == STARTUP:
            folder = folder.parent
        path = folder / STARTUP / KIT_FILE
        if not path.is_file():
            raise KitError(
                f"{folder} holds no startup kit ({STARTUP}/{KIT_FILE} is missing); make one "
                "with `ember poc prepare` (or `ember provision`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            kit = cls(folder=folder, **data)
        except (ValueError, TypeError) as exc:
            raise KitError(f"{path} is malformed: {exc}") from None
        for file in (kit.tls.ca, kit.tls.cert, kit.tls.key):
            if not file.is_file():
                raise KitError(f"the startup kit in {kit.startup} lacks {file.name}")
        from ember.provision.manifest import verify_kit

        verify_kit(kit.startup)  # a kit whose files were altered refuses to be used
        return kit
