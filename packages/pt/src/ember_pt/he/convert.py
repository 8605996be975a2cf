"""The sites' side of HE FedAvg: params converters ``pytorch-he`` / ``numpy-he``.

``<format>-from-numpy`` decrypts each encrypted layer the site receives with the secret
context of the key id it names (:func:`ember_pt.he.keys.secret_context`) and remembers, for
the calling script (its context: a thread, or a greenlet on a SimEnv carrier), which
layers and key; ``<format>-to-numpy`` encrypts those layers of what
the script sends with that key's public part. The script itself sees plain tensors or arrays.
"""

from __future__ import annotations

import contextvars
from typing import Any

import numpy as np

from ember_pt.he.ckks import HEError, decrypt_array, encrypt_array, is_encrypted, unpack
from ember_pt.he.keys import secret_context

_state: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ember_pt_he_state", default=None
)
_last: dict[str, Any] = {}


def decrypt_params(params: dict[str, Any]) -> dict[str, Any]:
    """Encrypted layers decrypted (numpy arrays); others as they are."""
    out: dict[str, Any] = {}
    encrypted: list[str] = []
    kid = None
    for key, value in params.items():
        if is_encrypted(value):
            header, _ = unpack(value)
            kid = header["key"]
            out[key] = decrypt_array(secret_context(kid), value)
            encrypted.append(key)
        else:
            out[key] = value
    state = {"kid": kid, "keys": encrypted}
    _state.set(state)
    _last.update(state)
    return out


def encrypt_params(params: dict[str, Any]) -> dict[str, Any]:
    """The layers the received model had encrypted, encrypted again (numpy in)."""
    state = _state.get() or _last
    kid = state.get("kid")
    keys = set(state.get("keys") or ())
    if kid is None:
        if not keys:
            return params
        raise HEError("no HE key in hand; receive an encrypted model before sending")
    context = secret_context(kid)
    return {
        k: encrypt_array(context, kid, np.asarray(v)) if k in keys and not is_encrypted(v) else v
        for k, v in params.items()
    }


def numpy_from_exchange(params: dict[str, Any]) -> dict[str, Any]:
    return decrypt_params(params)


def numpy_to_exchange(params: dict[str, Any]) -> dict[str, Any]:
    return encrypt_params({k: np.asarray(v) for k, v in params.items()})


def torch_from_exchange(params: dict[str, Any]) -> dict[str, Any]:
    from ember_pt.convert import to_state_dict

    return dict(to_state_dict(decrypt_params(params)))


def torch_to_exchange(params: dict[str, Any]) -> dict[str, Any]:
    from ember_pt.convert import from_state_dict

    return encrypt_params(dict(from_state_dict(params)))
