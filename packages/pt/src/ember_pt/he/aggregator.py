"""The server's HE aggregation: a weighted sum of ciphertexts, one result at a time."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ember.controllers import FLModel, ParamsType
from ember_pt.he.ckks import HEError, is_encrypted, pack, unpack, vectors


class HEAggregator:
    """FedAvg over encrypted layers, holding only the public context: each site's
    ciphertexts are multiplied by its weight and added to a running sum; ``result()``
    multiplies the sums by ``1 / sum of weights``. Layers sent in the clear (those
    ``encrypt_layers`` leaves out) are averaged as plain arrays; a layer that must be
    encrypted (``pattern``) but arrives in the clear is refused."""

    def __init__(
        self, job_file: str | None = None, start: str = ".", pattern: str | None = None
    ) -> None:
        from pathlib import Path

        from ember_pt.he.keys import public_context

        context, self.kid, _ = public_context(Path(job_file) if job_file else None, Path(start))
        if context.is_private():
            raise HEError("the server's aggregator was given a context holding the secret key")
        self.context = context
        self.pattern = re.compile(pattern) if pattern else None
        self.sums: dict[str, Any] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.total = 0.0

    def must_encrypt(self, key: str) -> bool:
        return self.pattern is None or bool(self.pattern.search(key))

    def add(self, site: str, model: FLModel, weight: float) -> None:
        if model.params_type not in (None, ParamsType.FULL):
            raise HEError(
                f"{site} sent {model.params_type} params; HE FedAvg averages FULL models "
                "(params_transfer_type='FULL')"
            )
        for key, value in (model.params or {}).items():
            if is_encrypted(value):
                header, chunks = unpack(value)
                if header["key"] != self.kid:
                    raise HEError(
                        f"{site} encrypted {key!r} with key {header['key']}, not the job's "
                        f"{self.kid}; give every site the same project's kit"
                    )
                scaled = [v * weight for v in vectors(self.context, chunks)]
                if key in self.sums:
                    self.sums[key] = [a + b for a, b in zip(self.sums[key], scaled, strict=True)]
                else:
                    self.sums[key] = scaled
                    self.meta[key] = header
            elif self.must_encrypt(key) and np.asarray(value).dtype.kind == "f":
                raise HEError(
                    f"{site} sent {key!r} in the clear, but encrypt_layers says it is "
                    "encrypted; the site must run with params_format from the recipe"
                )
            else:
                array = np.asarray(value, dtype=np.float64) * weight
                self.sums[key] = array if key not in self.sums else self.sums[key] + array
                self.meta[key] = {"dtype": str(np.asarray(value).dtype)}
        self.total += weight

    def result(self) -> FLModel:
        if self.total <= 0:
            raise HEError("no site's result had a positive weight")
        scale = 1.0 / self.total
        params: dict[str, Any] = {}
        for key, value in self.sums.items():
            meta = self.meta[key]
            if isinstance(value, list):
                chunks = [(v * scale).serialize() for v in value]
                params[key] = pack(self.kid, tuple(meta["shape"]), meta["dtype"], chunks)
            else:
                params[key] = (value * scale).astype(meta["dtype"])
        self.sums.clear()
        return FLModel(params=params, params_type=ParamsType.FULL)
