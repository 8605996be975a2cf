"""A job's view of the network: its runtime speaks of ``server`` and ``site-1``; on the
network those are the job's processes ``server.job.<id>`` and ``site-1.job.<id>``.

:class:`JobTransport` wraps a :class:`~ember.net.NetTransport` so the runtime built for
SimEnv (task board handlers, Client API links, peer links) runs unchanged in a job process.
Download references name network nodes, so the download service works below this layer.
"""

from __future__ import annotations

from typing import Any

from ember.runtime.transport import Endpoint, Handler

JOB_SEPARATOR = ".job."


def net_name(logical: str, job_id: str) -> str:
    """``site-1`` in job ``ab12`` -> ``site-1.job.ab12``."""
    return f"{logical}{JOB_SEPARATOR}{job_id}"


def logical_name(net: str, job_id: str) -> str:
    """``site-1.job.ab12`` -> ``site-1`` (other names are returned as they are)."""
    suffix = f"{JOB_SEPARATOR}{job_id}"
    return net[: -len(suffix)] if net.endswith(suffix) else net


def split_job_name(net: str) -> tuple[str, str] | None:
    """``site-1.job.ab12`` -> ``("site-1", "ab12")``; None for a node of no job."""
    base, sep, job_id = net.rpartition(JOB_SEPARATOR)
    return (base, job_id) if sep and base and job_id else None


class ScopedEndpoint:
    """An endpoint whose handlers see the senders' logical names."""

    def __init__(self, inner: Endpoint, job_id: str) -> None:
        self.inner = inner
        self.job_id = job_id
        self.name = logical_name(inner.name, job_id)
        self.stream = inner.stream

    def register_handler(self, topic: str, handler: Handler) -> None:
        job_id = self.job_id

        def scoped(sender: str, payload: Any) -> Any:
            return handler(logical_name(sender, job_id), payload)

        self.inner.register_handler(topic, scoped)


class JobTransport:
    """The messaging API of one job's process, in the job's logical names."""

    def __init__(self, transport: Any, job_id: str) -> None:
        self.transport = transport
        self.job_id = job_id

    def add_endpoint(
        self, name: str, lazy_tensors: bool = False, relay_tensors: bool = False
    ) -> ScopedEndpoint:
        inner = self.transport.add_endpoint(
            net_name(name, self.job_id), lazy_tensors, relay_tensors
        )
        return ScopedEndpoint(inner, self.job_id)

    def request(
        self, sender: str, target: str, topic: str, payload: Any, timeout: float | None = None
    ) -> Any:
        return self.transport.request(
            net_name(sender, self.job_id), net_name(target, self.job_id), topic, payload, timeout
        )

    def fire(self, sender: str, target: str, topic: str, payload: Any) -> None:
        self.request(sender, target, topic, payload)

    def close(self) -> None:
        self.transport.close()
