"""``TorchPersistor``: the server's initial and global PyTorch models, as numpy arrays.

The server aggregates numpy, so it holds the state_dict as numpy arrays and saves global
models as ``.safetensors`` files (readable by ``safetensors.torch.load_file``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ember.controllers import InitialModelPersistor, JobError


class TorchPersistor(InitialModelPersistor):
    """Initial model from a bundled safetensors file (an ``nn.Module`` given to the recipe),
    a ``{"path", "args"}`` factory, or a ``.pt``/``.pth``/``.safetensors`` checkpoint."""

    extension = ".safetensors"

    def __init__(
        self,
        initial_file: str | None = None,
        factory: dict[str, Any] | None = None,
        initial_ckpt: str | None = None,
        model_class: str | None = None,
    ) -> None:
        super().__init__(initial_file, factory, initial_ckpt)
        self.model_class = model_class  # recorded for sites; not needed here

    def from_built(self, built: Any, target: str) -> dict[str, Any]:
        from ember_pt.convert import from_state_dict

        if not hasattr(built, "state_dict"):
            raise JobError(f"model {target} built a {type(built).__name__}, not an nn.Module")
        return from_state_dict(built.state_dict())

    def save(self, params: dict[str, Any], path: Path) -> None:
        save_safetensors(params, path)

    def load(self, path: Path) -> dict[str, Any]:
        return load_checkpoint(path)


def save_safetensors(params: Mapping[str, Any], path: Path) -> None:
    """Write numpy params (or tensors) as a safetensors file, atomically."""
    from safetensors.numpy import save_file

    from ember_pt.convert import to_numpy

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: np.ascontiguousarray(to_numpy(v)) for k, v in params.items()}, str(tmp))
    os.replace(tmp, path)


def save_module(model: Any, path: Path) -> None:
    """Write an ``nn.Module``'s state_dict (at the time of the call) as safetensors."""
    save_safetensors(model.state_dict(), path)


def load_checkpoint(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Read a ``.safetensors`` file, or a ``.pt``/``.pth`` state_dict with
    ``torch.load(weights_only=True)`` (no arbitrary unpickling)."""
    if not path.is_file():
        raise JobError(f"checkpoint {path} does not exist (on the server)")
    if path.suffix == ".safetensors":
        try:
            return _read_numpy(path)
        except TypeError:
            pass  # a dtype numpy lacks (bfloat16, float8): read with torch, widen to float32
        except Exception as exc:
            raise JobError(f"cannot read safetensors checkpoint {path}: {exc}") from exc
        from safetensors.torch import load_file as load_torch

        from ember_pt.convert import from_state_dict

        return from_state_dict(load_torch(str(path)))
    import torch

    from ember_pt.convert import from_state_dict

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise JobError(f"cannot read PyTorch checkpoint {path}: {exc}") from exc
    if isinstance(state, Mapping) and not _all_tensors(state):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), Mapping) and _all_tensors(state[key]):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not _all_tensors(state):
        raise JobError(
            f"{path} does not hold a state_dict (a mapping of names to tensors, possibly "
            "under 'state_dict' or 'model')"
        )
    return from_state_dict(state)


def _all_tensors(state: Mapping[Any, Any]) -> bool:
    import torch

    return bool(state) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    )


def _read_numpy(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """A safetensors file as numpy arrays, read into fresh memory: with the default mmap
    backend the mapped file also counts in RSS while the arrays are copied out (2x)."""
    from safetensors.numpy import load_file

    if "backend" in inspect.signature(load_file).parameters:  # safetensors >= 0.8
        return dict(load_file(str(path), backend="pread"))
    return dict(load_file(str(path)))
