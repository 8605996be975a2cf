"""The device protocol's vocabulary and its two model encodings (JSON and safetensors).

The names follow NVFlare 2.7's edge protocol (``nvflare.edge.constants``, its
``nvflare/edge/api/feg.yaml``) so that its device SDKs can talk to an Ember gateway:

- ``POST /job``, ``POST /task?job_id=...``, ``POST /result?job_id=...&task_id=...``;
- headers ``X-Flare-Device-ID`` (required), ``X-Flare-Device-Info`` and
  ``X-Flare-User-Info`` (query strings);
- statuses ``OK``, ``RETRY``, ``NO_TASK``, ``NO_JOB``, ``DONE``, ``INVALID``,
  ``INVALID_REQUEST``, ``ERROR`` with ``retry_wait`` (whole seconds);
- a task's ``cookie`` (``model_version``, ``device_selection_id``) that the device sends back
  with its result;
- a model as a DXO-like dict ``{"kind": "WEIGHTS", "data": {name: nested number lists},
  "meta": {...}}``.

Ember's additions (the OpenAPI spec ``ember_edge/openapi.yaml`` has them all): a model body
in safetensors (``Accept: application/x-safetensors`` on ``/task``, ``Content-Type:
application/x-safetensors`` on ``/result``; the JSON envelope travels in the safetensors
header's ``__metadata__["ember"]``), a long poll on ``/task`` (``?wait=seconds``), bearer
tokens (``Authorization: Bearer ...``; 401 ``UNAUTHORIZED`` without a valid one) and
``retry_wait`` 0 (ask again at once, after a long poll that found nothing).

Numbers in JSON are written with Python's ``repr`` of the float (shortest round-trip), so a
float64 model sent as JSON arrives bit for bit the same as one sent as safetensors.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

# -- statuses (NVFlare's EdgeApiStatus, plus INVALID of its ResultResponse and UNAUTHORIZED) --
OK = "OK"
RETRY = "RETRY"
DONE = "DONE"
ERROR = "ERROR"
NO_JOB = "NO_JOB"
NO_TASK = "NO_TASK"
INVALID = "INVALID"
INVALID_REQUEST = "INVALID_REQUEST"
UNAUTHORIZED = "UNAUTHORIZED"

# -- headers (NVFlare's HttpHeaderKey) ------------------------------------------------------
DEVICE_ID = "X-Flare-Device-ID"
DEVICE_INFO = "X-Flare-Device-Info"
USER_INFO = "X-Flare-User-Info"

# -- cookie keys (NVFlare's CookieKey) ------------------------------------------------------
MODEL_VERSION = "model_version"
DEVICE_SELECTION_ID = "device_selection_id"

JSON = "application/json"
SAFETENSORS = "application/x-safetensors"
#: the key of the JSON envelope in a safetensors body's ``__metadata__``
ENVELOPE = "ember"

TASK_NAME = "train"
METHOD = "fedbuff"
WEIGHTS = "WEIGHTS"
WEIGHT_DIFF = "WEIGHT_DIFF"
#: NVFlare's ExecuTorch result: ``{name: {"data": numbers, "sizes": shape}}``, a difference
ET_TENSOR_DIFF = "et_tensor_diff"
#: the meta of an ExecuTorch task (NVFlare's nvflare.edge.model_protocol)
ET_META = {
    "model_buffer_type": "executorch",
    "model_buffer_native_format": "binary",
    "model_buffer_encoding": "base64",
}
MAX_DEVICE_ID = 256


class ProtocolError(ValueError):
    """A request body or header that does not follow the protocol (400 INVALID_REQUEST)."""


# -- JSON numbers ---------------------------------------------------------------------------
def params_to_json(params: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, str]]:
    """``({name: nested lists}, {name: dtype})`` of float or int arrays."""
    data: dict[str, Any] = {}
    dtypes: dict[str, str] = {}
    for name, value in params.items():
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise ProtocolError(f"{name}: only numeric arrays travel, got dtype {array.dtype}")
        data[name] = array.tolist()
        dtypes[name] = array.dtype.str.lstrip("<=|")
    return data, dtypes


def params_from_json(data: Any, dtypes: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Arrays from ``{name: nested lists}`` (float64 unless ``dtypes`` names another)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"model data must be an object of number arrays, got {type(data)}")
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        dtype = (dtypes or {}).get(name, "float64")
        try:
            array = np.asarray(value, dtype=np.dtype(dtype))
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"model entry {name!r} is not a number array: {exc}") from None
        if array.dtype.kind not in "fiu":
            raise ProtocolError(f"model entry {name!r}: dtype {dtype!r} is not numeric")
        out[str(name)] = array
    return out


def params_from_et_json(data: Any) -> dict[str, np.ndarray]:
    """Arrays from NVFlare's ``et_tensor_diff`` data: ``{name: {"data": [...], "sizes":
    [...]}}`` (float64)."""
    if not isinstance(data, dict):
        raise ProtocolError("et_tensor_diff data must be an object of {data, sizes} entries")
    out: dict[str, np.ndarray] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or "data" not in entry:
            raise ProtocolError(f"et_tensor_diff entry {name!r} needs data and sizes")
        try:
            array = np.asarray(entry["data"], dtype=np.float64)
            sizes = entry.get("sizes")
            out[str(name)] = array.reshape(sizes) if sizes is not None else array
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"et_tensor_diff entry {name!r}: {exc}") from None
    return out


def dumps(body: Mapping[str, Any]) -> bytes:
    """A JSON body (None values left out, as NVFlare's gateway does)."""
    return json.dumps(_clean(body), separators=(",", ":"), allow_nan=False).encode("utf-8")


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    return value


# -- safetensors ----------------------------------------------------------------------------
def params_to_safetensors(params: Mapping[str, np.ndarray], envelope: Mapping[str, Any]) -> bytes:
    """A safetensors body of ``params`` whose metadata holds the JSON ``envelope``."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in params.items()}
    return bytes(save(arrays, metadata={ENVELOPE: dumps(envelope).decode("utf-8")}))


def params_from_safetensors(body: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, envelope)`` of a safetensors body."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if len(body) < 8:
        raise ProtocolError("a safetensors body needs at least its 8-byte header length")
    (size,) = struct.unpack("<Q", body[:8])
    if size > len(body) - 8:
        raise ProtocolError("the safetensors header is longer than the body")
    try:
        header = json.loads(body[8 : 8 + size])
        arrays = load(body)
    except (ValueError, SafetensorError) as exc:
        raise ProtocolError(f"not a safetensors body: {exc}") from None
    meta = header.get("__metadata__") or {}
    try:
        envelope = json.loads(meta.get(ENVELOPE, "{}"))
    except ValueError as exc:
        raise ProtocolError(f"the safetensors metadata's {ENVELOPE!r} is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise ProtocolError(f"the safetensors metadata's {ENVELOPE!r} must be a JSON object")
    return {k: np.asarray(v) for k, v in arrays.items()}, envelope


def wants_safetensors(accept: str | None) -> bool:
    """Whether an ``Accept`` header ranks safetensors at least as high as JSON."""
    best = {"st": 0.0, "json": 0.0}
    for part in (accept or "").split(","):
        media, *params = [f.strip() for f in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if media.lower() == SAFETENSORS:
            best["st"] = max(best["st"], q)
        elif media.lower() in (JSON, "application/*", "*/*"):
            best["json"] = max(best["json"], q)
    return best["st"] > 0 and best["st"] >= best["json"]


def check_device_id(device_id: str | None) -> str:
    if not device_id:
        raise ProtocolError(f"the {DEVICE_ID} header is missing")
    if len(device_id) > MAX_DEVICE_ID or not device_id.isprintable():
        raise ProtocolError(
            f"the {DEVICE_ID} header must be printable and at most {MAX_DEVICE_ID} characters"
        )
    return device_id


__all__ = [
    "DEVICE_ID",
    "DEVICE_INFO",
    "DEVICE_SELECTION_ID",
    "DONE",
    "ERROR",
    "INVALID",
    "INVALID_REQUEST",
    "JSON",
    "MODEL_VERSION",
    "NO_JOB",
    "NO_TASK",
    "OK",
    "RETRY",
    "SAFETENSORS",
    "UNAUTHORIZED",
    "USER_INFO",
    "ProtocolError",
    "dumps",
    "params_from_json",
    "params_from_safetensors",
    "params_to_json",
    "params_to_safetensors",
]
