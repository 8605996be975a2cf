"""Simulated devices that train a PyTorch model (``EdgeFedBuffRecipe(model=nn.Module)``).

The server of an ember-edge job holds and aggregates numpy arrays (a PyTorch model's
``state_dict`` as arrays, saved as ``.safetensors`` like ember-pt does), so a device's task
carries numpy params. :class:`TorchDeviceProcessor` is the base class of a task processor
(:class:`~ember_edge.simulator.DeviceTaskProcessor`) that loads them into a torch module,
trains it on the device's own data and answers with its update; :func:`load_params` and
:func:`module_params` do the conversions for a processor written from scratch.

Importing this module imports torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ember_edge.simulator import DIFF, DeviceResult, DeviceTask


def load_params(module: nn.Module, params: Mapping[str, Any]) -> None:
    """Copy ``params`` (numpy arrays or tensors, keyed like ``module.state_dict()``) into
    ``module``, each cast to its tensor's dtype. The keys must match exactly: a missing or
    extra key raises a ``KeyError`` naming them."""
    state = module.state_dict()
    missing, extra = set(state) - set(params), set(params) - set(state)
    if missing or extra:
        raise KeyError(
            f"the params do not fit {type(module).__name__}: missing {sorted(missing)}, "
            f"unexpected {sorted(extra)} (is the device's model the job's model?)"
        )
    with torch.no_grad():
        for key, tensor in state.items():
            value = torch.as_tensor(np.asarray(params[key]))
            if tuple(value.shape) != tuple(tensor.shape):
                raise KeyError(
                    f"{key}: the params hold shape {tuple(value.shape)}, "
                    f"{type(module).__name__} has {tuple(tensor.shape)}"
                )
            tensor.copy_(value.to(tensor.dtype))


def module_params(module: nn.Module) -> dict[str, np.ndarray]:
    """``module.state_dict()`` as numpy arrays (copies, on the CPU)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


class TorchDeviceProcessor:
    """A simulated device that trains a PyTorch model: subclass it, give the model
    (:meth:`build_model`) and the device's local data (:meth:`load_data`); the default
    train step (:meth:`loss`, :meth:`make_optimizer`, :meth:`train`) is ``epochs`` passes
    of shuffled mini-batches of ``batch_size`` with SGD at ``lr`` on the cross-entropy of
    ``model(*inputs)`` against the last tensor of a batch. Each task loads the version's
    params into the device's module (:func:`load_params`), trains, and answers with the
    difference (``DIFF``), weighted by the device's number of samples.

    A worked example (scikit-learn's digits spread over the devices)::

        import zlib

        import torch
        from sklearn.datasets import load_digits
        from torch import nn

        from ember_edge.torch_devices import TorchDeviceProcessor

        class MLP(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net(x)

        class DigitsDevice(TorchDeviceProcessor):
            def __init__(self, samples: int = 64, **kwargs) -> None:
                super().__init__(**kwargs)  # lr, epochs, batch_size, seed
                self.samples = samples

            def build_model(self) -> nn.Module:
                return MLP()

            def load_data(self, device_id: str) -> tuple[torch.Tensor, torch.Tensor]:
                digits = load_digits()
                rng = torch.Generator().manual_seed(zlib.crc32(device_id.encode()))
                index = torch.randperm(1437, generator=rng)[: self.samples]
                x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
                return x[index], torch.tensor(digits.target)[index]

        recipe = EdgeFedBuffRecipe(
            model=MLP(),  # the server's initial model; saved as .safetensors
            simulation_config=SimulationConfig(
                task_processor=DigitsDevice,
                task_processor_args={"samples": 64, "lr": 0.1, "epochs": 2},
                num_devices=200,
            ),
            ...,
        )

    Override :meth:`train` for another training loop (return its metrics; the update is
    taken from the module afterwards) or :meth:`num_samples` for another weight. The
    module is built on a device's first task and kept for its later ones (a module per
    device that has worked: for tens of thousands of devices of a big model, return a
    module shared by the devices of one site from :meth:`build_model`; the pool runs a
    site's devices one at a time). Torch's threads are the process's: a simulation of many
    small devices is fastest with ``torch.set_num_threads(1)``.
    """

    def __init__(
        self, lr: float = 0.1, epochs: int = 1, batch_size: int = 32, seed: int = 0
    ) -> None:
        if not lr > 0 or epochs < 1 or batch_size < 1:
            raise ValueError(
                f"{type(self).__name__} needs lr > 0, epochs >= 1 and batch_size >= 1, got "
                f"lr={lr!r}, epochs={epochs!r}, batch_size={batch_size!r}"
            )
        self.lr, self.epochs, self.batch_size, self.seed = float(lr), epochs, batch_size, seed
        self.device_id = ""
        self.data: Sequence[torch.Tensor] = ()
        self.model: nn.Module | None = None

    # -- what a subclass gives -----------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The device's model: the job's model class, fresh (its weights are overwritten by
        every task's params)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model()")

    def load_data(self, device_id: str) -> Sequence[torch.Tensor]:
        """The device's local training data: tensors of one length (inputs first, the
        target last)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_data(device_id)")

    # -- the default train step ----------------------------------------------------------------
    def loss(self, model: nn.Module, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss of one batch: cross-entropy of ``model(*batch[:-1])`` against
        ``batch[-1]``."""
        return nn.functional.cross_entropy(model(*batch[:-1]), batch[-1])

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer of one task (made anew for each): SGD at ``lr``."""
        return torch.optim.SGD(model.parameters(), lr=self.lr)

    def batches(
        self, data: Sequence[torch.Tensor], generator: torch.Generator
    ) -> Iterator[list[torch.Tensor]]:
        """One epoch's shuffled mini-batches of ``batch_size`` (the last may be smaller)."""
        order = torch.randperm(len(data[0]), generator=generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield [t[index] for t in data]

    def train(self, model: nn.Module, task: DeviceTask) -> dict[str, float]:
        """Train ``model`` (holding ``task``'s version) on :attr:`data`; return metrics."""
        generator = torch.Generator().manual_seed(
            zlib.crc32(f"{self.seed}/{task.device_id}/{task.model_version}".encode())
        )
        optimizer = self.make_optimizer(model)
        model.train()
        total, steps = 0.0, 0
        for _ in range(self.epochs):
            for batch in self.batches(self.data, generator):
                optimizer.zero_grad()
                loss = self.loss(model, batch)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                total += float(loss.detach())
                steps += 1
        return {"loss": total / max(steps, 1)}

    def num_samples(self, data: Sequence[torch.Tensor]) -> float:
        """The device's weight in the aggregate: its number of samples."""
        return float(len(data[0])) if data else 1.0

    # -- the task-processor interface ----------------------------------------------------------
    def setup(self, device_id: str) -> None:
        self.device_id = device_id
        self.data = self.load_data(device_id)
        if not self.data or len({len(t) for t in self.data}) != 1 or len(self.data[0]) == 0:
            raise ValueError(
                f"{type(self).__name__}.load_data({device_id!r}) must return non-empty "
                "tensors of one length (inputs first, the target last)"
            )

    def process_task(self, task: DeviceTask) -> DeviceResult:
        if self.model is None:
            self.model = self.build_model()
        model = self.model
        load_params(model, task.params)
        metrics = self.train(model, task)
        trained = model.state_dict()
        update = {
            key: trained[key].detach().cpu().numpy().astype(np.float64)
            - np.asarray(value, dtype=np.float64)
            for key, value in task.params.items()
        }
        return DeviceResult(
            params=update,
            params_type=DIFF,
            weight=self.num_samples(self.data),
            metrics=dict(metrics),
        )

    def shutdown(self) -> None:
        self.model = None
        self.data = ()


__all__ = ["TorchDeviceProcessor", "load_params", "module_params"]
