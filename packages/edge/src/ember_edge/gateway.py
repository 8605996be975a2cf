"""The device gateway: an async HTTP(S) server in a leaf aggregator site's job process.

Real devices (or the HTTP-mode simulator, :mod:`ember_edge.http_devices`) talk to it in
NVFlare's edge protocol plus Ember's additions (:mod:`ember_edge.protocol`, the OpenAPI spec
``ember_edge/openapi.yaml``, also served at ``GET /openapi.yaml``):

1. ``POST /job``: the device registers (after its bearer token is checked); the site
   announces newly registered devices to the server in its next report.
2. ``POST /task?job_id=...[&wait=s]``: the device's task, once the server's FedBuff selected
   it (the model version as JSON numbers or, with ``Accept: application/x-safetensors``,
   safetensors); ``NO_TASK`` with ``retry_wait`` until then, or a long poll of up to
   ``wait`` seconds (at most ``edge.gateway_long_poll``) that returns as soon as a task
   arrives; ``DONE`` once the job ends.
3. ``POST /result?job_id=...&task_id=...``: the device's model or update; it goes into this
   site's per-version running sums (:class:`~ember_edge.simulator.VersionSums`).

:class:`DeviceGateway` has the interface :class:`~ember_edge.site.EdgeSiteLink` uses from
:class:`~ember_edge.simulator.DevicePool` (``device_ids``, ``start``, ``collect``,
``restore``, ``outstanding``, ``stats``, ``shutdown``), so the site runs one or the other.
Its event loop runs in its own thread; the site's thread and the loop share its state under
one lock, and the loop never waits on that lock for long (no I/O under it).

TLS: with a certificate the gateway serves HTTPS: ``cert``/``key`` given, else the site's
startup kit's ``gateway.crt``/``gateway.key`` (PocEnv/ProdEnv; a server-auth certificate for
the gateway's host name), else a self-signed certificate made for this job (``localhost``,
``127.0.0.1`` and the bound host), written to ``<site workspace>/gateway-tls/`` and named in
``gateway.json`` for devices to pin. ``tls=None`` (the default) means HTTPS where the site has
a startup kit (PocEnv/ProdEnv) and plain HTTP elsewhere (SimEnv, on loopback).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import inspect
import json
import logging
import math
import os
import secrets
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import numpy as np

from ember.config import describe_setting, get_setting
from ember.plugins import load_target
from ember_edge import protocol as p
from ember_edge.simulator import VersionSums, put_back

log = logging.getLogger("ember.edge.gateway")

GATEWAY_FILE = "gateway.json"


class GatewayError(RuntimeError):
    """The gateway cannot start (its port, certificate or authenticator)."""


class DeviceAuthenticator(Protocol):
    """Decides whether a device may use the gateway (checked on every request).

    ``authenticate(device_id, token, headers)`` gets the bearer token (``Authorization:
    Bearer <token>``, else the ``auth_token`` or ``access_token`` of NVFlare's
    ``X-Flare-User-Info`` header; None when there is none) and returns True to admit the
    device; False (or an exception) answers 401 and the device is never registered nor
    counted. It runs on the gateway's event loop: keep it quick, or make it ``async def``
    (an awaitable result is awaited). The recipe names it ``"module:Class"`` with keyword
    arguments (``GatewayConfig(authenticator=..., authenticator_args=...)``); the class is
    made once per gateway.

    A worked example, tokens from an identity service you already run::

        import aiohttp

        class IdentityServiceTokens:
            def __init__(self, url: str) -> None:
                self.url = url
                self.known: dict[str, str] = {}  # token -> device id (a cache)

            async def authenticate(self, device_id, token, headers) -> bool:
                if token is None:
                    return False
                if self.known.get(token) == device_id:
                    return True
                async with aiohttp.ClientSession() as session:
                    async with session.get(self.url, params={"token": token}) as reply:
                        ok = reply.status == 200 and (await reply.json())["device"] == device_id
                if ok:
                    self.known[token] = device_id
                return ok

    and in the job: ``GatewayConfig(authenticator="my_auth:IdentityServiceTokens",
    authenticator_args={"url": "https://id.example.org/check"})``.
    :class:`HmacDeviceTokens` is a ready one (a token is an HMAC of the device id).
    """

    def authenticate(
        self, device_id: str, token: str | None, headers: Mapping[str, str]
    ) -> bool | Awaitable[bool]: ...


class HmacDeviceTokens:
    """A device's token is ``hex(HMAC-SHA256(secret, device_id))``: whoever provisions the
    devices mints each one's token with :meth:`token_for`; the gateway needs only the
    secret. The secret comes from the environment variable ``secret_env`` of the site's
    process (default ``EMBER_EDGE_DEVICE_SECRET``), or ``secret`` (tests and demos only: a
    secret in the job's arguments is visible to whoever reads the job)."""

    def __init__(self, secret: str | None = None, secret_env: str = "EMBER_EDGE_DEVICE_SECRET"):
        value = secret if secret is not None else os.environ.get(secret_env)
        if not value:
            raise GatewayError(
                f"HmacDeviceTokens needs a secret: set {secret_env} in the site's environment"
            )
        self._key = value.encode("utf-8")

    def token_for(self, device_id: str) -> str:
        return hmac.new(self._key, device_id.encode("utf-8"), "sha256").hexdigest()

    def authenticate(self, device_id: str, token: str | None, headers: Mapping[str, str]) -> bool:
        return token is not None and hmac.compare_digest(token, self.token_for(device_id))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The device's token: ``Authorization: Bearer``, else NVFlare's user-info fields."""
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    info = headers.get(p.USER_INFO)
    if info:
        fields = parse_qs(info)
        for key in ("auth_token", "access_token"):
            if fields.get(key):
                return fields[key][0]
    return None


# -- safetensors, written by hand so a version's tensor bytes are encoded once -----------------
_ST_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
}


@dataclass
class _Model:
    """One model version as the gateway serves it (each encoding made on first use)."""

    version: int
    params: dict[str, np.ndarray]
    #: the site encoder's bytes of the version (ETFedBuffRecipe: the training .pte)
    payload: bytes | None = None
    _json: bytes | None = None
    _dtypes: dict[str, str] = field(default_factory=dict)
    _st_entries: dict[str, Any] | None = None
    _st_data: bytes = b""

    def json_data(self) -> tuple[bytes, dict[str, str]]:
        if self._json is None:
            data, self._dtypes = p.params_to_json(self.params)
            self._json = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        return self._json, self._dtypes

    def safetensors(self, envelope: Mapping[str, Any]) -> bytes:
        if self._st_entries is None:
            entries: dict[str, Any] = {}
            chunks: list[bytes] = []
            offset = 0
            for name in sorted(self.params):
                array = np.ascontiguousarray(self.params[name])
                code = _ST_DTYPES.get(array.dtype.name)
                if code is None:
                    raise p.ProtocolError(f"{name}: dtype {array.dtype} has no safetensors code")
                raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
                entries[name] = {
                    "dtype": code,
                    "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(raw)],
                }
                chunks.append(raw)
                offset += len(raw)
            self._st_entries, self._st_data = entries, b"".join(chunks)
        header = {
            "__metadata__": {p.ENVELOPE: p.dumps(envelope).decode("utf-8")},
            **self._st_entries,
        }
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + self._st_data


@dataclass
class _Task:
    task_id: str
    device: str
    version: int
    started: float


def kit_folder(site_dir: Path) -> Path | None:
    """The site's startup-kit folder in PocEnv/ProdEnv (``<kit>/jobs/<id>/workspace``)."""
    candidate = site_dir.resolve().parent.parent.parent
    return candidate if (candidate / "startup" / "kit.json").is_file() else None


def _self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A fresh self-signed server certificate for ``localhost``, 127.0.0.1 and ``host``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ember-edge-gateway")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for value in dict.fromkeys(["127.0.0.1", host]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.append(x509.DNSName(value))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / "gateway.key", folder / "gateway.crt"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


class DeviceGateway:
    """The HTTP device gateway of one aggregator site (see the module docstring)."""

    def __init__(
        self,
        site: str,
        site_dir: Path,
        job_id: str,
        job_name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool | None = None,
        cert: str | None = None,
        key: str | None = None,
        authenticator: str | None = None,
        authenticator_args: Mapping[str, Any] | None = None,
        long_poll: bool = True,
        task_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        training_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.site = site
        #: an ExecuTorch job's device training parameters, in each .pte task's meta
        self.training_config = dict(training_config or {})
        self.site_dir = Path(site_dir)
        self.job_id = job_id
        self.job_name = job_name or job_id
        self.host = host
        self.port = int(port)
        self.long_poll = bool(long_poll)
        self.task_ttl = (
            float(get_setting("edge.device_wait_timeout")) if task_ttl is None else task_ttl
        )
        self._clock = clock
        self._max_wait = float(get_setting("edge.gateway_long_poll"))
        self._retry_wait = int(get_setting("edge.gateway_retry_wait"))
        self._max_body = int(get_setting("edge.gateway_max_body"))
        self._stop_timeout = float(get_setting("edge.gateway_stop_timeout"))
        self._auth_timeout = float(get_setting("edge.gateway_auth_timeout"))
        self._tls_choice = tls
        self._cert, self._key = cert, key
        self.cert_path: Path | None = None
        #: the CA that signed cert_path when it is the kit's (devices verify with it)
        self.ca_path: Path | None = None
        self._auth: DeviceAuthenticator | None = None
        if authenticator:
            try:
                self._auth = load_target(authenticator)(**dict(authenticator_args or {}))
            except GatewayError:
                raise
            except Exception as exc:
                raise GatewayError(
                    f"{site}: the device authenticator {authenticator!r} could not be made: {exc}"
                ) from exc
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.device_ids: list[str] = []
        self._registered: set[str] = set()
        self._tasks: dict[str, _Task] = {}  # device -> its task
        self._by_id: dict[str, _Task] = {}  # task id -> task
        self._models: dict[int, _Model] = {}
        self._sums: dict[int, VersionSums] = {}
        self._done = False
        self.stats: dict[str, int] = {
            "tasks": 0,
            "answered": 0,
            "dropped_out": 0,
            "requests": 0,
            "registered": 0,
            "refused": 0,
            "invalid_results": 0,
            "failed_results": 0,
            "expired": 0,
        }
        self._waiters: dict[str, asyncio.Future[None]] = {}  # the loop's own
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._stopped = threading.Event()
        self.url = ""

    # -- life cycle --------------------------------------------------------------------------
    def begin(self) -> str:
        """Listen (in a thread of its own); returns the gateway's URL once it does."""
        ssl_ctx = self._ssl_context()
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen(ssl_ctx))
            except BaseException as exc:  # reported to begin()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()
                self._stopped.set()

        self._thread = threading.Thread(target=main, name=f"edge-gateway-{self.site}", daemon=True)
        self._thread.start()
        timeout = float(get_setting("edge.gateway_start_timeout"))
        if not started.wait(timeout):
            raise GatewayError(
                f"{self.site}: the device gateway did not start within "
                f"{describe_setting('edge.gateway_start_timeout', timeout)}"
            )
        if failure:
            raise GatewayError(
                f"{self.site}: the device gateway could not listen on {self.host}:{self.port}: "
                f"{failure[0]} (choose another GatewayConfig port, or 0 for any free port)"
            ) from failure[0]
        self._write_address()
        log.info("%s: device gateway listening on %s", self.site, self.url)
        return self.url

    def _ssl_context(self) -> ssl.SSLContext | None:
        kit = kit_folder(self.site_dir)
        use_tls = (
            self._tls_choice
            if self._tls_choice is not None
            else (kit is not None or bool(self._cert))
        )
        if not use_tls:
            return None
        cert, key = self._cert, self._key
        if not cert and kit is not None and (kit / "startup" / "gateway.crt").is_file():
            # made by provisioning (ember-edge's kit-files hook), signed by the project's
            # root CA: devices verify it with the kit's rootCA.pem
            cert = str(kit / "startup" / "gateway.crt")
            key = str(kit / "startup" / "gateway.key")
            if (kit / "startup" / "rootCA.pem").is_file():
                self.ca_path = kit / "startup" / "rootCA.pem"
        if not cert:
            made = _self_signed(self.site_dir / "gateway-tls", self.host)
            cert, key = str(made[0]), str(made[1])
        if not key:
            raise GatewayError(f"{self.site}: GatewayConfig has a cert but no key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise GatewayError(
                f"{self.site}: cannot load the gateway's certificate {cert}: {exc}"
            ) from None
        self.cert_path = Path(cert)
        return ctx

    async def _listen(self, ssl_ctx: ssl.SSLContext | None) -> None:
        from aiohttp import web

        @web.middleware
        async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self._errors(request, handler)  # type: ignore[no-any-return]

        app = web.Application(client_max_size=self._max_body, middlewares=[errors])
        app.router.add_post("/job", self._job)
        app.router.add_post("/task", self._task)
        app.router.add_post("/result", self._result)
        app.router.add_get("/openapi.yaml", self._spec)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=self._stop_timeout
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=ssl_ctx)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = int(port)
        scheme = "https" if ssl_ctx is not None else "http"
        shown = f"[{host}]" if ":" in str(host) else host
        self.url = f"{scheme}://{shown}:{port}/"

    def _write_address(self) -> None:
        info = {
            "site": self.site,
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "tls": self.url.startswith("https"),
            "cert": None if self.cert_path is None else str(self.cert_path),
            "ca": None if self.ca_path is None else str(self.ca_path),
            "job_id": self.job_id,
            "pid": os.getpid(),
        }
        self.site_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.site_dir / f".{GATEWAY_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.site_dir / GATEWAY_FILE)

    def shutdown(self) -> None:
        """End: held long polls answer DONE, requests in progress get up to
        ``edge.gateway_stop_timeout``, then the server closes. Idempotent."""
        with self._cond:
            if self._done:
                return
            self._done = True
            self._cond.notify_all()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._close(), loop)
        except RuntimeError:  # the loop has stopped already
            return
        try:
            future.result(self._stop_timeout + 1.0)
        except Exception as exc:  # reported, the job goes on ending
            log.warning(
                "%s: the device gateway did not stop within %s: %s",
                self.site,
                describe_setting("edge.gateway_stop_timeout", self._stop_timeout),
                exc,
            )
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        if not self._stopped.wait(self._stop_timeout):
            log.warning(
                "%s: the device gateway did not stop within %s",
                self.site,
                describe_setting("edge.gateway_stop_timeout", self._stop_timeout),
            )

    async def _close(self) -> None:
        self._wake_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the pool interface (the site's thread) ------------------------------------------------
    def start(
        self,
        devices: list[str],
        version: int,
        params: Mapping[str, np.ndarray],
        payload: bytes | None = None,
    ) -> None:
        """Give ``devices`` model ``version``: their next (or held) /task gets it. With a
        ``payload`` (the site encoder's bytes of the version: ETFedBuffRecipe's training
        .pte) a JSON task carries it as NVFlare's ExecuTorch devices expect (base64, the
        ``model_buffer_*`` meta) rather than the params."""
        now = self._clock()
        with self._cond:
            if version not in self._models:
                self._models[version] = _Model(
                    version, {k: np.asarray(v) for k, v in params.items()}, payload
                )
            for device in devices:
                old = self._tasks.get(device)
                if old is not None:
                    self._by_id.pop(old.task_id, None)
                task = _Task(secrets.token_hex(8), device, version, now)
                self._tasks[device] = task
                self._by_id[task.task_id] = task
                self.stats["tasks"] += 1
            self._prune_models(version)
        loop = self._loop
        if loop is not None and devices:
            with contextlib.suppress(RuntimeError):  # the loop has stopped (the job ends)
                loop.call_soon_threadsafe(self._wake, list(devices))

    def _prune_models(self, current: int) -> None:
        used = {t.version for t in self._tasks.values()} | {current}
        for version in [v for v in self._models if v not in used]:
            del self._models[version]

    def _expire(self) -> None:
        """Forget tasks older than ``task_ttl`` (their devices vanished); under the lock."""
        if self.task_ttl is None or not self._tasks:
            return
        now = self._clock()
        late = [d for d, t in self._tasks.items() if now - t.started >= self.task_ttl]
        for device in late:
            task = self._tasks.pop(device)
            self._by_id.pop(task.task_id, None)
        self.stats["expired"] += len(late)

    @property
    def outstanding(self) -> int:
        with self._cond:
            self._expire()
            return len(self._tasks)

    def collect(self, deadline: float, linger: bool = False) -> dict[int, VersionSums]:
        """Wait until every device given a task has answered (or its task expired) or
        ``deadline`` (a clock time), then take the per-version sums that have come in; with
        ``linger``, wait for ``deadline`` in any case."""
        with self._cond:
            while not self._done:
                self._expire()
                now = self._clock()
                if (not self._tasks and not linger) or now >= deadline:
                    break
                self._cond.wait(deadline - now)
            taken, self._sums = self._sums, {}
            return taken

    def restore(self, sums: dict[int, VersionSums]) -> None:
        with self._cond:
            put_back(self._sums, sums)

    # -- the loop's side ---------------------------------------------------------------------
    def _wake(self, devices: list[str]) -> None:
        for device in devices:
            waiter = self._waiters.pop(device, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _wake_all(self) -> None:
        self._wake(list(self._waiters))

    def _reply(self, body: Mapping[str, Any], status: int = 200) -> Any:
        from aiohttp import web

        return web.Response(body=p.dumps(body), status=status, content_type=p.JSON)

    async def _errors(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        self.stats["requests"] += 1
        try:
            return await handler(request)
        except _Refused as exc:
            return web.Response(
                body=p.dumps({"status": exc.code, "message": exc.message}),
                status=exc.status,
                content_type=p.JSON,
                headers=exc.headers,
            )
        except p.ProtocolError as exc:
            return self._reply({"status": p.INVALID_REQUEST, "message": str(exc)}, 400)
        except web.HTTPRequestEntityTooLarge:
            return self._reply(
                {
                    "status": p.INVALID_REQUEST,
                    "message": "the body is larger than "
                    + describe_setting("edge.gateway_max_body", self._max_body),
                },
                413,
            )
        except web.HTTPException as exc:
            return self._reply({"status": p.INVALID_REQUEST, "message": exc.reason}, exc.status)

    async def _admit(self, request: Any) -> str:
        device = p.check_device_id(request.headers.get(p.DEVICE_ID))
        if self._auth is not None:
            token = bearer_token(request.headers)
            try:
                verdict = self._auth.authenticate(device, token, request.headers)
                if inspect.isawaitable(verdict):
                    verdict = await asyncio.wait_for(verdict, self._auth_timeout)
            except TimeoutError:
                log.warning(
                    "%s: the authenticator failed for %s: no verdict within %s",
                    self.site,
                    device,
                    describe_setting("edge.gateway_auth_timeout", self._auth_timeout),
                )
                verdict = False
            except Exception as exc:  # a failing check refuses the device
                log.warning("%s: the authenticator failed for %s: %s", self.site, device, exc)
                verdict = False
            if verdict is not True:
                self.stats["refused"] += 1
                raise _Refused(
                    401,
                    p.UNAUTHORIZED,
                    "a valid bearer token is needed (Authorization: Bearer <token>)",
                    {"WWW-Authenticate": 'Bearer realm="ember-edge"'},
                )
        return device

    async def _json_body(self, request: Any) -> dict[str, Any]:
        return self._parse_json(await request.read())

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise p.ProtocolError(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise p.ProtocolError("the body must be a JSON object")
        return body

    def _register(self, device: str) -> None:
        with self._cond:
            if device not in self._registered:
                self._registered.add(device)
                self.device_ids.append(device)
                self.stats["registered"] += 1

    def _job_data(self) -> dict[str, Any]:
        return {
            "config": {
                "model_formats": [p.JSON, p.SAFETENSORS],
                "long_poll": self._max_wait if self.long_poll else 0.0,
                "task_name": p.TASK_NAME,
            }
        }

    async def _job(self, request: Any) -> Any:
        device = await self._admit(request)
        await self._json_body(request)  # capabilities: accepted, not used yet
        if self._done:
            return self._reply({"status": p.DONE, "job_id": self.job_id})
        self._register(device)
        return self._reply(
            {
                "status": p.OK,
                "job_id": self.job_id,
                "job_name": self.job_name,
                "method": p.METHOD,
                "job_data": self._job_data(),
            }
        )

    def _wait_of(self, request: Any) -> float:
        raw = request.query.get("wait")
        if raw is None or not self.long_poll:
            return 0.0
        try:
            wait = float(raw)
        except ValueError:
            raise p.ProtocolError(f"wait must be seconds, got {raw!r}") from None
        if not math.isfinite(wait) or wait < 0:
            raise p.ProtocolError(f"wait must be seconds >= 0, got {raw!r}")
        return min(wait, self._max_wait)

    async def _task(self, request: Any) -> Any:
        device = await self._admit(request)
        await self._json_body(request)  # cookie: the gateway keeps its own record
        job_id = request.query.get("job_id")
        if job_id and job_id != self.job_id:
            return self._reply(
                {"status": p.NO_JOB, "retry_wait": self._retry_wait, "message": "no such job"}
            )
        if self._done:
            return self._reply({"status": p.DONE, "job_id": self.job_id})
        self._register(device)
        wait = self._wait_of(request)
        task = self._task_of(device)
        waited = False
        if task is None and wait > 0:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            older = self._waiters.pop(device, None)
            if older is not None and not older.done():
                older.set_result(None)  # a second poll of the same device replaces the first
            self._waiters[device] = waiter
            try:
                await asyncio.wait_for(asyncio.shield(waiter), wait)
            except TimeoutError:
                waited = True
            finally:
                if self._waiters.get(device) is waiter:
                    del self._waiters[device]
            if self._done:
                return self._reply({"status": p.DONE, "job_id": self.job_id})
            task = self._task_of(device)
        if task is None:
            return self._reply(
                {
                    "status": p.NO_TASK,
                    "job_id": self.job_id,
                    "retry_wait": 0 if waited else self._retry_wait,
                }
            )
        with self._cond:
            model = self._models.get(task.version)
        if model is None:  # replaced while we waited: ask again
            return self._reply({"status": p.RETRY, "job_id": self.job_id, "retry_wait": 0})
        envelope: dict[str, Any] = {
            "status": p.OK,
            "job_id": self.job_id,
            "task_id": task.task_id,
            "task_name": p.TASK_NAME,
            "cookie": {p.MODEL_VERSION: task.version, p.DEVICE_SELECTION_ID: task.task_id},
        }
        meta = {p.MODEL_VERSION: task.version}
        from aiohttp import web

        if p.wants_safetensors(request.headers.get("Accept")):
            body = model.safetensors({**envelope, "task_data": {"kind": p.WEIGHTS, "meta": meta}})
            return web.Response(body=body, content_type=p.SAFETENSORS)
        if model.payload is not None:  # NVFlare's ExecuTorch task (its ETTaskProcessor)
            return self._reply(
                {
                    **envelope,
                    "task_data": {
                        "kind": p.WEIGHTS,
                        "data": base64.b64encode(model.payload).decode("ascii"),
                        "meta": {
                            **meta,
                            **p.ET_META,
                            **(
                                {"training_config": self.training_config}
                                if self.training_config
                                else {}
                            ),
                        },
                    },
                }
            )
        data, dtypes = model.json_data()
        marker = "\x00ember-data\x00"
        head = p.dumps(
            {
                **envelope,
                "task_data": {
                    "kind": p.WEIGHTS,
                    "meta": {**meta, "dtypes": dtypes},
                    "data": marker,
                },
            }
        )
        body = head.replace(json.dumps(marker).encode(), data, 1)
        return web.Response(body=body, content_type=p.JSON)

    def _task_of(self, device: str) -> _Task | None:
        with self._cond:
            self._expire()
            return self._tasks.get(device)

    async def _result(self, request: Any) -> Any:
        device = await self._admit(request)
        job_id = request.query.get("job_id")
        task_id = request.query.get("task_id")
        if not task_id:
            raise p.ProtocolError("the task_id query parameter is missing")
        ctype = (request.content_type or p.JSON).lower()
        raw = await request.read()
        if ctype == p.SAFETENSORS:
            arrays, envelope = p.params_from_safetensors(raw)
            result = envelope.get("result") or {}
            if not isinstance(result, dict):
                raise p.ProtocolError("result must be an object")
        else:
            envelope = self._parse_json(raw)
            result = envelope.get("result") or {}
            if not isinstance(result, dict):
                raise p.ProtocolError("result must be an object")
            arrays = None
        if self._done:
            return self._reply({"status": p.DONE, "task_id": task_id})
        answer = {"task_id": task_id, "task_name": p.TASK_NAME}
        with self._cond:
            task = self._by_id.get(task_id)
            if (job_id and job_id != self.job_id) or task is None or task.device != device:
                self.stats["invalid_results"] += 1
                return self._reply(
                    {**answer, "status": p.INVALID, "message": "no such task for this device"}
                )
            model = self._models[task.version]
        status = envelope.get("status", p.OK)
        if status != p.OK:  # the device could not do it: its slot frees on the server
            self._drop(task)
            self.stats["failed_results"] += 1
            return self._reply({**answer, "status": p.OK, "message": "failure noted"})
        update, weight = self._update_of(result, arrays, model)
        with self._cond:
            if self._by_id.get(task_id) is not task:  # replaced or expired meanwhile
                self.stats["invalid_results"] += 1
                return self._reply(
                    {**answer, "status": p.INVALID, "message": "the task was replaced"}
                )
            self._by_id.pop(task_id)
            self._tasks.pop(device, None)
            sums = self._sums.setdefault(task.version, VersionSums())
            sums.add(device, update, weight)
            self.stats["answered"] += 1
            self._cond.notify_all()
        return self._reply({**answer, "status": p.OK})

    def _drop(self, task: _Task) -> None:
        with self._cond:
            if self._by_id.get(task.task_id) is task:
                del self._by_id[task.task_id]
                self._tasks.pop(task.device, None)
                self._cond.notify_all()

    def _update_of(
        self, result: Mapping[str, Any], arrays: dict[str, np.ndarray] | None, model: _Model
    ) -> tuple[dict[str, np.ndarray], float]:
        kind = result.get("kind", p.WEIGHT_DIFF)
        if kind not in (p.WEIGHTS, p.WEIGHT_DIFF, p.ET_TENSOR_DIFF):
            raise p.ProtocolError(
                f"result kind must be {p.WEIGHTS}, {p.WEIGHT_DIFF} or {p.ET_TENSOR_DIFF}"
            )
        meta = result.get("meta") or {}
        if not isinstance(meta, dict):
            raise p.ProtocolError("result meta must be an object")
        weight = meta.get("weight", meta.get("num_samples", 1.0))
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise p.ProtocolError(f"result weight must be a number, got {weight!r}")
        if not (math.isfinite(weight) and weight > 0):
            raise p.ProtocolError(f"result weight must be > 0, got {weight!r}")
        if arrays is None and kind == p.ET_TENSOR_DIFF:
            arrays = p.params_from_et_json(result.get("data"))
        elif arrays is None:
            arrays = p.params_from_json(result.get("data"), meta.get("dtypes"))
        if set(arrays) != set(model.params):
            raise p.ProtocolError(
                f"the result's arrays {sorted(arrays)} are not the model's {sorted(model.params)}"
            )
        update: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            base = model.params[name]
            if value.shape != base.shape:
                raise p.ProtocolError(
                    f"{name}: shape {list(value.shape)} is not the model's {list(base.shape)}"
                )
            value = value.astype(np.float64, copy=False)
            if not np.all(np.isfinite(value)):
                raise p.ProtocolError(f"{name}: the result holds a NaN or infinity")
            update[name] = value - base.astype(np.float64) if kind == p.WEIGHTS else value
        return update, float(weight)

    async def _spec(self, request: Any) -> Any:
        from aiohttp import web

        text = resources.files("ember_edge").joinpath("openapi.yaml").read_bytes()
        return web.Response(body=text, content_type="application/yaml")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def read_gateways(folder: Path, job_id: str | None = None) -> list[dict[str, Any]]:
    """Every ``gateway.json`` under ``folder`` (a job's workspace, a PoC workspace), of the
    job ``job_id`` if given, by site name."""
    out = []
    for path in sorted(Path(folder).rglob(GATEWAY_FILE)):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written
        if job_id is None or info.get("job_id") == job_id:
            out.append(info)
    return sorted(out, key=lambda g: str(g.get("site")))


__all__ = [
    "GATEWAY_FILE",
    "DeviceAuthenticator",
    "DeviceGateway",
    "GatewayError",
    "HmacDeviceTokens",
    "bearer_token",
    "kit_folder",
    "read_gateways",
]
