"""The Client API functions; each resolves to the calling site's session.

In SimEnv every simulated site runs its script with its own session, bound to the script's
own context (its thread, or its greenlet on a shared carrier thread: ``contextvars`` are per
greenlet), so ``flare.receive()`` in site-1's script is site-1's. A script launched as a
subprocess has one session, connected to its site over a local socket (``init()`` opens it).
"""

from __future__ import annotations

import contextvars
import os
import threading
from pathlib import Path
from typing import Any

from ember.client.session import ClientAPIError, ClientSession
from ember.common.messages import TaskName
from ember.common.model import FLModel

_session: contextvars.ContextVar[ClientSession | None] = contextvars.ContextVar(
    "ember_client_session", default=None
)
_process_session: ClientSession | None = None
_process_lock = threading.Lock()

ENV_ENDPOINT = "EMBER_CLIENT_ENDPOINT"


def bind_session(session: ClientSession | None) -> None:
    """Make ``session`` the calling script's session (the site runner does this)."""
    _session.set(session)


def _current() -> ClientSession:
    session = _session.get() or _process_session
    if session is None:
        raise ClientAPIError(
            "no Ember client session: this script must be run by an Ember job (SimEnv, "
            "PocEnv, ProdEnv) and call flare.init() first"
        )
    return session


def init(rank: str | None = None) -> None:
    """Connect this script to its site (a no-op for in-process scripts after the first call)."""
    global _process_session
    session = _session.get()
    if session is None:
        with _process_lock:
            if _process_session is None:
                if ENV_ENDPOINT not in os.environ:
                    raise ClientAPIError(
                        "flare.init(): this script was not started by Ember (no "
                        f"{ENV_ENDPOINT} in the environment); run it through a recipe"
                    )
                from ember.client.subprocess_client import connect_from_env

                _process_session = connect_from_env()
            session = _process_session
    session.initialized = True


def receive(timeout: float | None = None) -> FLModel | None:
    """The next model from the server; None when the job is over or ``timeout`` s passed."""
    return _current().receive(timeout)


def send(model: FLModel, clear_cache: bool = True) -> None:
    """Send the result of the current task back to the server."""
    _current().send(model, clear_cache)


def is_running() -> bool:
    """False once the job is over (waits for the next task if none is in hand)."""
    return _current().is_running()


def is_train() -> bool:
    """Whether the task in hand is a training task."""
    return _current().task_name() == TaskName.TRAIN


def is_evaluate() -> bool:
    """Whether the task in hand asks to evaluate the received model."""
    return _current().task_name() == TaskName.VALIDATE


def is_submit_model() -> bool:
    """Whether the task in hand asks for this site's local model."""
    return _current().task_name() == TaskName.SUBMIT_MODEL


def system_info() -> dict[str, Any]:
    """``site_name`` and ``job_id`` of this script's site."""
    session = _current()
    return {"site_name": session.site, "job_id": session.job_id}


def get_site_name() -> str:
    return _current().site


def get_job_id() -> str:
    return _current().job_id


def get_config() -> dict[str, Any]:
    """The job's client config: train args, transfer type, workspace folder, ...

    The workspace folder (``"workspace"``) exists once this returns: SimEnv makes a site's
    folder only when something is written there."""
    config = dict(_current().config)
    if isinstance(config.get("workspace"), str):
        Path(config["workspace"]).mkdir(parents=True, exist_ok=True)
    return config


def log(
    key: str, value: Any, data_type: str = "scalar", global_step: int | None = None, **kwargs: Any
) -> None:
    """Send a value to the server's experiment tracking (see ``ember.client.tracking``)."""
    kind = str(getattr(data_type, "value", data_type)).lower()
    step = global_step if global_step is not None else kwargs.get("step")
    _current().log(kind, key, value, step)
