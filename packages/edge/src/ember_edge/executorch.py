"""ExecuTorch for ember-edge (the ``ember-edge[et]`` extra): ``ETFedBuffRecipe``'s devices.

An ExecuTorch device trains a ``.pte`` program: the model with its loss, exported with
its backward graph (``torch.export`` of a module returning the loss first,
``torch.export.experimental._export_forward_backward``, ``executorch.exir.to_edge`` and
``to_executorch``), run by ExecuTorch's training runtime (``executorch.extension.training``:
``forward_backward``, an SGD optimizer) on the device's own data.

- :class:`DeviceModel`: the exported module, ``net`` with its loss (NVFlare's name).
- :func:`export_pte`: a :class:`DeviceModel` (holding a version's weights) to ``.pte`` bytes.
- :class:`PteExporter`: an aggregator site's encoder (``EdgeSiteLink(encoder=...)``): each
  model version exported once; the site gives the bytes to its devices as the task's
  ``payload``. Sites in one process share the exports (keyed by the params' digest).
- :class:`ETDeviceProcessor`: the base of a simulated ExecuTorch device.

The server still holds, aggregates and saves the plain ``net``'s state_dict as numpy
(``.safetensors``); the ``.pte``'s parameter names are the net's with ``net.`` in front,
which a device's update drops. Importing this module imports torch, not ExecuTorch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import threading
import time
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ember_edge.simulator import DIFF, DeviceResult, DeviceTask
from ember_edge.torch_devices import load_params

log = logging.getLogger(__name__)

#: what to install for ETFedBuffRecipe
ET_EXTRA = "ember-edge[et]"
#: the prefix of the net's parameters in the exported program (DeviceModel.net)
NET_PREFIX = "net."


class ExecuTorchMissingError(ImportError):
    """ExecuTorch is not installed where ETFedBuffRecipe needs it."""


def executorch_available() -> bool:
    """Whether ExecuTorch's training runtime is installed (imports none of it)."""
    try:
        return importlib.util.find_spec("executorch.extension.training") is not None
    except (ImportError, ValueError):
        return False


def require_executorch(what: str) -> None:
    """Raise :class:`ExecuTorchMissingError` naming the extra when ExecuTorch is missing."""
    if not executorch_available():
        raise ExecuTorchMissingError(
            f"{what} needs ExecuTorch, which is not installed here: "
            f"pip install '{ET_EXTRA}' (executorch, beside torch)"
        )


class DeviceModel(nn.Module):
    """What an ExecuTorch device trains: ``net`` and its ``loss`` (cross-entropy unless
    given), ``forward(input, label) -> (loss, predicted class)``; the loss must be the
    first output for ExecuTorch's training runtime."""

    def __init__(self, net: nn.Module, loss: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.loss = loss if loss is not None else nn.CrossEntropyLoss()

    def forward(self, input: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pred = self.net(input)
        return self.loss(pred, label), pred.detach().argmax(dim=1)


def export_pte(
    device_model: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]
) -> bytes:
    """``device_model`` (with the weights to ship) as a training-capable ``.pte``: inputs of
    ``input_shape`` (float) and labels of ``output_shape`` (int64); the batch size is fixed
    by the shapes."""
    require_executorch("exporting a model to ExecuTorch")
    from executorch.exir import to_edge
    from torch.export import export
    from torch.export.experimental import _export_forward_backward

    example = (
        torch.randn(*input_shape),
        torch.zeros(*output_shape, dtype=torch.int64),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's pytree LeafSpec notice
        program = export(device_model, example)
        program = _export_forward_backward(program)
        return bytes(to_edge(program).to_executorch().buffer)


def build_from_spec(spec: Mapping[str, Any]) -> Any:
    """``{"path": "pkg.module.Class", "args": {...}}`` built."""
    path = str(spec["path"])
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"{path!r} is not 'package.module.Class'")
    target = getattr(importlib.import_module(module), name)
    return target(**dict(spec.get("args") or {}))


# exports shared by the aggregator sites of one process (SimEnv): digest -> .pte bytes
_SHARED: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
_SHARED_MAX = 4
#: one thread at a time runs ExecuTorch in a process (exports, loads, training steps): its
#: runtime logs through Python's sys.stdout while it holds a lock of its own, and a second
#: thread entering it meanwhile with the GIL deadlocks both (seen with two SimEnv sites)
ET_LOCK = threading.RLock()


def forget_exports() -> None:
    """Drop the exports this process's sites share (the next version is exported anew)."""
    with ET_LOCK:
        _SHARED.clear()


def _digest(params: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    for key in sorted(params):
        array = np.ascontiguousarray(np.asarray(params[key]))
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class PteExporter:
    """An aggregator site's encoder for ``ETFedBuffRecipe``: a model version's params to a
    training ``.pte`` (:func:`export_pte` of ``device_model(net)``, the net built from
    ``net`` = ``{"path", "args"}`` and loaded with the params). The site calls
    :meth:`encode` once per version; sites of one process share exports of the same
    params. ``stats``: this site's ``pte_exports``, ``pte_shared`` (taken from another
    site), ``pte_export_seconds`` and ``pte_bytes``; ``export_seconds``: per version."""

    def __init__(
        self,
        net: Mapping[str, Any],
        input_shape: Sequence[int],
        output_shape: Sequence[int],
        device_model: str = "ember_edge.executorch.DeviceModel",
    ) -> None:
        require_executorch("an ETFedBuffRecipe aggregator site")
        self.net_spec = dict(net)
        self.input_shape = [int(d) for d in input_shape]
        self.output_shape = [int(d) for d in output_shape]
        self.device_model = device_model
        self._key = (repr(sorted(self.net_spec.items())), tuple(self.input_shape),
                     tuple(self.output_shape), device_model)  # fmt: skip
        self.stats: dict[str, float] = {
            "pte_exports": 0,
            "pte_shared": 0,
            "pte_export_seconds": 0.0,
            "pte_bytes": 0,
        }
        self.export_seconds: dict[int, float] = {}

    def encode(self, version: int, params: Mapping[str, Any]) -> bytes:
        key = (*self._key, _digest(params))
        with ET_LOCK:  # one export at a time: a second site waits and shares it
            pte = _SHARED.get(key)
            if pte is not None:
                _SHARED.move_to_end(key)
                self.stats["pte_shared"] += 1
                return pte
            started = time.perf_counter()
            net = build_from_spec(self.net_spec)
            load_params(net, params)
            module, _, name = self.device_model.rpartition(".")
            wrapper = getattr(importlib.import_module(module), name)(net)
            pte = export_pte(wrapper, self.input_shape, self.output_shape)
            seconds = time.perf_counter() - started
            _SHARED[key] = pte
            while len(_SHARED) > _SHARED_MAX:
                _SHARED.popitem(last=False)
        self.stats["pte_exports"] += 1
        self.stats["pte_export_seconds"] += seconds
        self.stats["pte_bytes"] = len(pte)
        self.export_seconds[version] = seconds
        log.info(
            "model version %d exported to a %d-byte training .pte in %.2f s",
            version,
            len(pte),
            seconds,
        )
        return pte


class ETDeviceProcessor:
    """A simulated ExecuTorch device: subclass it and give the device's data
    (:meth:`load_data`: inputs and int64 labels of one length); each task loads the
    version's ``.pte`` (``task.payload``) into ExecuTorch's training runtime, runs
    ``epoch`` passes of mini-batches of ``batch_size`` (the export's batch size: a last
    smaller batch is dropped) with ExecuTorch's SGD, and answers with the difference of
    the net's parameters (``DIFF``), weighted by the samples it trained on.

    ``training_config`` (NVFlare's ``ETTaskProcessor`` keys): ``batch_size`` (32),
    ``shuffle`` (True), ``learning_rate`` or ``lr`` (0.1), ``momentum``, ``weight_decay``,
    ``dampening`` (0), ``nesterov`` (False), ``epoch`` (1); ``ETFedBuffRecipe`` fills in
    its ``device_training_params`` and the batch size of ``input_shape``. Example::

        class DigitsETDevice(ETDeviceProcessor):
            def load_data(self, device_id):
                x, y = my_digits_of(device_id)  # float32 (n, 64), int64 (n,)
                return x, y

        recipe = ETFedBuffRecipe(
            device_model=DeviceModel(MLP()),
            input_shape=(16, 64),
            output_shape=(16,),
            simulation_config=SimulationConfig(task_processor=DigitsETDevice, num_devices=50),
            device_training_params={"epoch": 2, "lr": 0.1},
            ...,
        )
    """

    def __init__(self, training_config: Mapping[str, Any] | None = None) -> None:
        config: dict[str, Any] = {
            "batch_size": 32,
            "shuffle": True,
            "learning_rate": 0.1,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "dampening": 0.0,
            "nesterov": False,
            "epoch": 1,
        }
        given = dict(training_config or {})
        if "lr" in given:
            given.setdefault("learning_rate", given.pop("lr"))
        if "epochs" in given:
            given.setdefault("epoch", given.pop("epochs"))
        unknown = set(given) - set(config)
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown training_config keys {sorted(unknown)}; "
                f"known: {sorted(config)}"
            )
        config.update(given)
        self.training_config = config
        self.device_id = ""
        self.data: Sequence[torch.Tensor] = ()

    def load_data(self, device_id: str) -> Sequence[torch.Tensor]:
        """The device's local training data: ``(inputs, labels)`` of one length."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_data(device_id)")

    def setup(self, device_id: str) -> None:
        require_executorch("a simulated ExecuTorch device")
        self.device_id = device_id
        self.data = self.load_data(device_id)
        if len(self.data) != 2 or len(self.data[0]) != len(self.data[1]):
            raise ValueError(
                f"{type(self).__name__}.load_data({device_id!r}) must return (inputs, labels) "
                "of one length"
            )

    def process_task(self, task: DeviceTask) -> DeviceResult:
        if task.payload is None:
            raise RuntimeError(
                f"{type(self).__name__} got model version {task.model_version} without a "
                ".pte payload: ExecuTorch devices need ETFedBuffRecipe (its sites export "
                "each version)"
            )
        with ET_LOCK:
            return self._train(task, task.payload)

    def _train(self, task: DeviceTask, payload: bytes) -> DeviceResult:
        from executorch.extension.training import (
            _load_for_executorch_for_training_from_buffer,
            get_sgd_optimizer,
        )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExecuTorch's "experimental API" warnings
            program = _load_for_executorch_for_training_from_buffer(payload)
        cfg = self.training_config
        size = int(cfg["batch_size"])
        x, y = self.data
        batches = len(x) // size
        if batches == 0:
            raise ValueError(
                f"device {self.device_id} holds {len(x)} samples, fewer than one batch of "
                f"{size} (the .pte's batch size)"
            )
        generator = torch.Generator().manual_seed(
            zlib.crc32(f"{task.device_id}/{task.model_version}".encode())
        )
        initial: dict[str, torch.Tensor] | None = None
        optimizer = None
        total, steps = 0.0, 0
        for _ in range(int(cfg["epoch"])):
            order = (
                torch.randperm(len(x), generator=generator)
                if cfg["shuffle"]
                else torch.arange(len(x))
            )
            for b in range(batches):
                index = order[b * size : (b + 1) * size]
                loss, _pred = program.forward_backward("forward", (x[index], y[index]))
                if initial is None:  # the parameters exist once a first step has run
                    initial = {k: v.clone() for k, v in program.named_parameters().items()}
                    optimizer = get_sgd_optimizer(
                        program.named_parameters(),
                        float(cfg["learning_rate"]),
                        float(cfg["momentum"]),
                        float(cfg["dampening"]),
                        float(cfg["weight_decay"]),
                        bool(cfg["nesterov"]),
                    )
                assert optimizer is not None
                optimizer.step(program.named_gradients())
                total += float(loss)
                steps += 1
        assert initial is not None
        trained = program.named_parameters()
        update = {
            _server_key(name, task.params): (trained[name] - start).numpy().astype(np.float64)
            for name, start in initial.items()
        }
        return DeviceResult(
            params=update,
            params_type=DIFF,
            weight=float(batches * size),
            metrics={"loss": total / steps},
        )

    def shutdown(self) -> None:
        self.data = ()


def _server_key(name: str, params: Mapping[str, Any]) -> str:
    """A ``.pte`` parameter's name in the server's model (``net.`` dropped). A task from a
    gateway carries the ``.pte`` alone (no arrays, as NVFlare's ExecuTorch devices get it):
    then the prefix is dropped without a check."""
    if name.startswith(NET_PREFIX) and (not params or name[len(NET_PREFIX) :] in params):
        return name[len(NET_PREFIX) :]
    if name in params:
        return name
    raise KeyError(f"the .pte's parameter {name!r} is not in the job's model")


__all__ = [
    "ET_EXTRA",
    "DeviceModel",
    "ETDeviceProcessor",
    "ExecuTorchMissingError",
    "PteExporter",
    "executorch_available",
    "export_pte",
    "forget_exports",
    "require_executorch",
]
