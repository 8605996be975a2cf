"""Round checkpoints in a job's server folder, so that a job resumes after a crash.

After each completed round a resumable controller (:class:`Resumable`) writes, into
``<server_dir>/checkpoint/<workflow index>/``:

- ``model.safetensors``: the global model (numpy arrays of the dtypes safetensors has),
  written straight from the arrays' memory;
- ``state.fobs``: the round, the controller's :meth:`Resumable.checkpoint_state` (JSON
  values and numpy arrays, encoded with FOBS: no pickle) and the arrays safetensors lacks.

Each file is written to a temporary name, fsynced and renamed over the old one, the state
file last: a crash at any moment leaves the previous round's checkpoint or the new one, never
a mix (the state names the round its model belongs to). ``runtime.checkpoint`` turns it off.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ember import fobs
from ember.client.formats import NUMPY, convert_params
from ember.config import get_setting
from ember.runtime.context import ServerContext
from ember.runtime.errors import JobError

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.fobs"
FORMAT_VERSION = 1

_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


class CheckpointError(JobError):
    """A checkpoint cannot be read (or written); the message names the file."""


@runtime_checkable
class Resumable(Protocol):
    """A controller whose state survives a server restart.

    A controller that has these two methods, and calls :func:`resume_params` when it starts
    and :func:`checkpoint_round` after each completed round, resumes from its last completed
    round: the job store (PocEnv, ProdEnv) and SimEnv's ``resume=True`` restart it, it gets
    back its global model and what :meth:`checkpoint_state` returned, and goes on with the
    next round. An in-flight round is redone. ``checkpoint_state`` returns JSON values and
    numpy arrays (no objects); ``restore_state`` receives the same dict.

    Example: the median controller of :class:`~ember.controllers.Controller`, resumable::

        from ember.controllers import checkpoint_round, resume_params

        class MedianController:
            ...
            def checkpoint_state(self) -> dict:
                return {"next_round": self.next_round}

            def restore_state(self, state: dict) -> None:
                self.next_round = int(state["next_round"])

            def run(self, ctx: ServerContext) -> None:
                self.next_round = 0
                params = resume_params(ctx, self)  # calls restore_state, or None
                if params is None:
                    params = self.persistor.initial_params(ctx.job_dir)
                for rnd in range(self.next_round, self.num_rounds):
                    ...  # broadcast, take the median
                    self.next_round = rnd + 1
                    checkpoint_round(ctx, self, rnd, params)
    """

    def checkpoint_state(self) -> dict[str, Any]:
        """What the controller needs to go on after the round just completed."""
        ...

    def restore_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_state` returned."""
        ...


@dataclass
class Checkpoint:
    """One workflow's last completed round: its number, global model and state."""

    round: int
    params: dict[str, Any]
    state: dict[str, Any]
    folder: Path


def checkpoint_folder(server_dir: Path, workflow: int) -> Path:
    """Where workflow number ``workflow`` of a job keeps its checkpoint."""
    return Path(server_dir) / CHECKPOINT_DIR / str(workflow)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Any) -> int:
    """``write(file)`` into a temporary file beside ``path``, fsynced, renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            size = int(write(f))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return size


def write_safetensors(path: Path, arrays: dict[str, np.ndarray]) -> int:
    """Write ``arrays`` as one safetensors file, atomically, from the arrays' own memory
    (no copy of a C-contiguous array); returns the bytes written."""
    header: dict[str, Any] = {}
    offset = 0
    ordered = []
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))
        header[name] = {
            "dtype": _DTYPES[data.dtype.name],
            "shape": list(data.shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        offset += data.nbytes
        ordered.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)

    def write(f: Any) -> int:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for data in ordered:
            if data.nbytes:
                f.write(data.reshape(-1).view(np.uint8).data)
        return 8 + len(raw) + offset

    return _atomic_write(path, write)


def _storable(array: Any) -> bool:
    return (
        isinstance(array, np.ndarray)
        and array.dtype.name in _DTYPES
        and array.dtype.byteorder in ("<", "=", "|")
    )


def save_checkpoint(folder: Path, rnd: int, params: dict[str, Any], state: dict[str, Any]) -> None:
    """Write round ``rnd``'s checkpoint (numpy ``params`` and the controller's ``state``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v for k, v in params.items() if _storable(v)}
    others = {k: v for k, v in params.items() if k not in tensors}
    try:
        write_safetensors(folder / MODEL_FILE, tensors)
        record = {
            "version": FORMAT_VERSION,
            "round": rnd,
            "model_keys": list(tensors),
            "other_params": others,
            "state": state,
        }
        _atomic_write(folder / STATE_FILE, lambda f: fobs.dump(record, f) or 0)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write the checkpoint in {folder}: {exc.strerror or exc}; free disk space "
            "or turn checkpoints off (runtime.checkpoint=false)"
        ) from exc


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, None when there is none; a :class:`CheckpointError`
    naming the file when one cannot be read."""
    state_path = folder / STATE_FILE
    model_path = folder / MODEL_FILE
    if not state_path.exists():
        return None
    try:
        record = fobs.loadf(state_path)
        if not isinstance(record, dict) or record.get("version") != FORMAT_VERSION:
            raise ValueError("not an Ember checkpoint of this version")
        rnd = int(record["round"])
        state = dict(record["state"])
        keys = list(record["model_keys"])
        others = dict(record["other_params"])
    except Exception as exc:
        raise CheckpointError(
            f"cannot read the checkpoint {state_path}: {exc}; remove the folder {folder} to "
            "start the job's workflow over"
        ) from exc
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(model_path))
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise ValueError(f"missing tensors {missing[:3]}")
    except Exception as exc:
        raise CheckpointError(
            f"cannot read the checkpoint {model_path}: {exc}; remove the folder {folder} to "
            "start the job's workflow over"
        ) from exc
    params = {k: tensors[k] for k in keys}
    params.update(others)
    return Checkpoint(rnd, params, state, folder)


def _check_model_file(path: Path) -> None:
    """That a safetensors file is whole: its header parses and the file is as long as the
    header says (a cut-short write shows here), without reading the tensors."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size - 8:
                raise ValueError(f"the header claims {length} bytes, the file has {size}")
            header = json.loads(f.read(length))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        expected = 8 + length + max(ends, default=0)
        if size != expected:
            raise ValueError(f"{size} bytes, the header describes {expected}")
    except Exception as exc:
        raise CheckpointError(
            f"cannot read the checkpoint {path}: {exc}; remove the folder {path.parent} to "
            "start the job's workflow over"
        ) from exc


def last_checkpointed_round(server_dir: Path) -> int | None:
    """The round of the latest workflow's checkpoint in a job's server folder (None: no
    checkpoint yet); every checkpoint's state file is read and its model file's header
    checked, a :class:`CheckpointError` naming the file when one is unreadable. What a
    restarted server checks before it resumes a job (the tensors are read by the job)."""
    root = Path(server_dir) / CHECKPOINT_DIR
    folders = sorted(
        (f for f in root.iterdir() if f.is_dir() and f.name.isdigit()) if root.is_dir() else [],
        key=lambda f: int(f.name),
    )
    found: int | None = None
    for folder in folders:
        state_path = folder / STATE_FILE
        if not state_path.exists():
            continue
        try:
            record = fobs.loadf(state_path)
            if not isinstance(record, dict) or record.get("version") != FORMAT_VERSION:
                raise ValueError("not an Ember checkpoint of this version")
            rnd = int(record["round"])
        except Exception as exc:
            raise CheckpointError(
                f"cannot read the checkpoint {state_path}: {exc}; remove the folder {folder} "
                "to start the job's workflow over"
            ) from exc
        _check_model_file(folder / MODEL_FILE)
        found = rnd
    return found


def _folder(ctx: ServerContext) -> Path | None:
    if not bool(get_setting("runtime.checkpoint")):
        return None
    workflow = int(ctx.state.get("workflow_index", 0))
    return checkpoint_folder(ctx.server_dir, workflow)


def resume_params(
    ctx: ServerContext, controller: Resumable, server_format: str = NUMPY
) -> dict[str, Any] | None:
    """At the start of a resumable controller's ``run``: the global model of its last
    checkpointed round (in ``server_format``), after handing the controller its state
    (:meth:`Resumable.restore_state`); None when there is no checkpoint (a fresh start)."""
    folder = _folder(ctx)
    if folder is None:
        return None
    found = load_checkpoint(folder)
    if found is None:
        return None
    controller.restore_state(found.state)
    ctx.state["resumed_from_round"] = found.round
    if int(ctx.state.get("workflow_index", 0)) == 0:  # later workflows' rounds restart at 0
        ctx.records.resume(found.round)
    ctx.log.info("resumed from round %d (checkpoint %s)", found.round, folder)
    params: dict[str, Any] = convert_params(found.params, NUMPY, server_format)
    return params


def checkpoint_round(
    ctx: ServerContext,
    controller: Resumable,
    rnd: int,
    params: dict[str, Any],
    server_format: str = NUMPY,
) -> None:
    """After round ``rnd`` of a resumable controller completed: checkpoint its global
    model and :meth:`Resumable.checkpoint_state` (nothing with ``runtime.checkpoint`` off)."""
    folder = _folder(ctx)
    if folder is None:
        return
    numpy_params = convert_params(params, server_format, NUMPY)
    save_checkpoint(folder, rnd, numpy_params, controller.checkpoint_state())
