"""Where the memory goes: a timeline of RSS at the job's key points (``job.py --trace``).

Wraps a few framework functions (export of the module, the server's initial model, each
site's task fetch and send, each result's aggregation, the new global model) so that each
logs the process's RSS as a multiple of the model size, and samples RSS every few
milliseconds to report the peak and when it happened. For analysis only: the wrappers cost
nothing model-sized.
"""

from __future__ import annotations

import functools
import resource
import sys
import threading
import time
from typing import Any

_PAGE = resource.getpagesize()


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


class Tracer:
    def __init__(self, model_bytes: int, base: int) -> None:
        self.model = model_bytes
        self.base = base
        self.t0 = time.perf_counter()
        self.peak = (0, 0.0, "")
        self.last_event = "start"
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)

    def x(self, value: int) -> float:
        return (value - self.base) / self.model

    def event(self, what: str) -> None:
        now, value = time.perf_counter() - self.t0, rss()
        with self.lock:
            self.last_event = what
            print(f"[trace] {now:7.3f}s  rss {self.x(value):5.2f}x  {what}", file=sys.stderr)

    def _sample(self) -> None:
        while not self.stop.wait(0.002):
            value = rss()
            if value > self.peak[0]:
                self.peak = (value, time.perf_counter() - self.t0, self.last_event)

    def start(self) -> None:
        self.sampler.start()

    def finish(self) -> None:
        self.stop.set()
        self.sampler.join()
        value, at, after = self.peak
        print(
            f"[trace] sampled peak rss {self.x(value):.2f}x model (net of the interpreter) at "
            f"{at:.3f}s, after: {after}",
            file=sys.stderr,
        )


def wrap(owner: Any, name: str, label: Any, tracer: Tracer) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tracer.event(f"{label(args)} start")
        out = original(*args, **kwargs)
        tracer.event(f"{label(args)} end")
        return out

    setattr(owner, name, wrapper)


def install(model_bytes: int, base: int) -> Tracer:
    import ember_pt.persistor as persistor
    from ember.client.session import ClientSession
    from ember.runtime.aggregation import WeightedAverage
    from ember.runtime.controllers.fedavg import FedAvgController

    tracer = Tracer(model_bytes, base)
    wrap(persistor, "save_module", lambda a: "export: save_module", tracer)
    wrap(persistor.TorchPersistor, "initial_params", lambda a: "server: initial_params", tracer)
    wrap(ClientSession, "_fetch", lambda a: f"{a[0].site}: fetch task (pull global)", tracer)
    wrap(ClientSession, "send", lambda a: f"{a[0].site}: send", tracer)
    wrap(WeightedAverage, "add", lambda a: f"server: aggregate {a[1]}", tracer)
    wrap(FedAvgController, "next_global", lambda a: "server: next_global", tracer)
    tracer.start()
    return tracer
