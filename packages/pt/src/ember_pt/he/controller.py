"""``HEFedAvgController``: FedAvg whose server holds only ciphertexts and the public key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ember.controllers import FedAvgController, ServerContext
from ember_pt.he.ckks import encrypt_array, is_encrypted

#: the job's own public context (throw-away keys), relative to the job folder
JOB_CONTEXT = "app/he_public_context.tenseal"


class HEFedAvgController(FedAvgController):
    """:class:`~ember.controllers.FedAvgController` with homomorphic encryption: the initial
    model's layers matching ``encrypt_layers`` (a regex; None: every layer) are encrypted with
    the public context before round 0, each round's results are summed as ciphertexts
    (:class:`~ember_pt.he.aggregator.HEAggregator`), and the global model the server saves
    and sends stays encrypted. Only sites, holding the secret key, ever see it in the
    clear."""

    def __init__(self, encrypt_layers: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encrypt_layers = encrypt_layers

    def run(self, ctx: ServerContext) -> None:
        from ember_pt.he.aggregator import HEAggregator
        from ember_pt.he.keys import public_context

        job_file = ctx.job_dir / JOB_CONTEXT
        context, kid, path = public_context(job_file, ctx.server_dir)
        ctx.log.info("HE FedAvg: public CKKS context %s from %s (no secret key)", kid, path)
        self.aggregator = {
            "path": "ember_pt.he.aggregator:HEAggregator",
            "args": {
                "job_file": str(job_file) if job_file.is_file() else None,
                "start": str(ctx.server_dir),
                "pattern": self.encrypt_layers,
            },
        }
        probe = HEAggregator(**self.aggregator["args"])
        initial = self.persistor.initial_params

        def encrypted_initial(job_dir: Path) -> dict[str, Any]:
            params = initial(job_dir)
            return {
                k: encrypt_array(context, kid, v) if _encrypts(probe, k, v) else v
                for k, v in params.items()
            }

        self.persistor.initial_params = encrypted_initial  # type: ignore[method-assign]
        super().run(ctx)


def _encrypts(probe: Any, key: str, value: Any) -> bool:
    """Float layers that ``encrypt_layers`` names (integer counters stay in the clear)."""
    import numpy as np

    if is_encrypted(value) or not probe.must_encrypt(key):
        return False
    return bool(np.asarray(value).dtype.kind == "f")
