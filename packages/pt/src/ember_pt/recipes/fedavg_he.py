"""``FedAvgRecipeWithHE``: FedAvg whose server sums CKKS ciphertexts (``ember-pt[he]``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ember.recipes import JobFile, ModelSetup, RecipeArgumentError
from ember_pt.recipes.fedavg import FedAvgRecipe

HE_CONTROLLER = "ember_pt.he.controller:HEFedAvgController"
JOB_CONTEXT = "app/he_public_context.tenseal"


class FedAvgRecipeWithHE(FedAvgRecipe):
    """FedAvg with homomorphic encryption (TenSEAL CKKS), NVFlare's ``FedAvgRecipeWithHE``.

    Every site decrypts the global model it receives with the secret key, trains on plain
    tensors as usual, and its result's layers are encrypted before they leave the site. The
    server holds only the public context: it multiplies each site's ciphertexts by the site's
    weight (``aggregation_weights[site] * NUM_STEPS_CURRENT_ROUND``), adds them up and scales
    the sum by ``1 / total weight``, so the global model it saves and sends is ciphertext.

    ``encrypt_layers``: the layers to encrypt: None (every float layer), a list of layer
    names, or a regex string (``re.search``); the others travel and are averaged in the clear.
    Takes every argument of :class:`ember_pt.recipes.FedAvgRecipe` but ``aggregator`` (the
    HE aggregator is fixed) and a DIFF transfer; ``framework`` is ``"pytorch"`` (default) or
    ``"numpy"``. Example::

        from ember import SimEnv
        from ember_pt.recipes import FedAvgRecipeWithHE

        recipe = FedAvgRecipeWithHE(
            name="hello-he", min_clients=2, num_rounds=3, model=Net(),
            train_script="client.py", encrypt_layers=["fc.weight", "fc.bias"],
        )
        recipe.execute(SimEnv(num_clients=2))

    Keys: ``ember provision`` (with ember-pt[he] installed) puts the project's pair in the
    clients' kits and only the public context in the server's; in SimEnv and PocEnv,
    :meth:`execute` makes throw-away keys for the job (see ``docs/privacy.md``).
    """

    controller = HE_CONTROLLER
    replaces = ("aggregator", "aggregator_data_kind")

    def __init__(
        self,
        *,
        name: str = "fedavg_he",
        encrypt_layers: str | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.encrypt_layers = _encrypt_pattern(encrypt_layers)
        transfer = kwargs.get("params_transfer_type", "FULL")
        if str(getattr(transfer, "value", transfer)) != "FULL":
            raise RecipeArgumentError(
                f"FedAvgRecipeWithHE averages FULL models; got params_transfer_type={transfer!r}"
                " (drop it or give 'FULL')"
            )
        if kwargs.get("server_expected_format", "numpy") != "numpy":
            raise RecipeArgumentError(
                "FedAvgRecipeWithHE's server holds ciphertexts, not tensors; drop "
                "server_expected_format"
            )
        super().__init__(name=name, **kwargs)

    def framework_name(self, framework: Any) -> str:
        if framework in (None, "pytorch", "numpy"):
            return str(framework or "pytorch")
        raise RecipeArgumentError(
            f"FedAvgRecipeWithHE takes framework='pytorch' or 'numpy', got {framework!r}"
        )

    def model_setup(
        self, framework: str, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> ModelSetup:
        from ember.recipes import get_framework

        setup = get_framework(framework).setup(model, initial_ckpt, files)
        setup.params_format = f"{setup.params_format}-he"
        return setup

    def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
        return {**args, "encrypt_layers": self.encrypt_layers}

    def export(self, job_dir: str | Path) -> Path:
        """The job folder; a job without keys yet gets a throw-away pair (the public context
        in the job, the secret one in ``$EMBER_HE_KEYS``, where SimEnv's sites look). A server
        whose kit holds a provisioned public context uses that one instead."""
        if JOB_CONTEXT not in self.files:
            from ember_pt.he.keys import throwaway_keys

            _, public, _ = throwaway_keys()
            self.files[JOB_CONTEXT] = public
        return super().export(job_dir)

    def execute(self, env: Any) -> Any:
        """Run in ``env``. PocEnv: a throw-away pair for this job, its secret context written
        to each client's ``local/he_keys/`` (never the server's); SimEnv: see :meth:`export`;
        ProdEnv: the provisioned kits' keys."""
        if type(env).__name__ == "PocEnv":
            from ember_pt.he.keys import throwaway_keys

            folder, public, kid = throwaway_keys()
            self.files[JOB_CONTEXT] = public
            secret = (folder / f"{kid}.tenseal").read_bytes()
            for kit in env.system().clients:
                keys = Path(kit.folder) / "local" / "he_keys"
                _write_private(keys / f"{kid}.tenseal", secret)
        return super().execute(env)


def _write_private(path: Path, data: bytes) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _encrypt_pattern(encrypt_layers: Any) -> str | None:
    """``encrypt_layers`` as one regex (None: every float layer)."""
    if encrypt_layers is None:
        return None
    if isinstance(encrypt_layers, str):
        if not encrypt_layers:
            raise RecipeArgumentError(
                "encrypt_layers='' names no layer; give None (every layer), names or a regex"
            )
        try:
            re.compile(encrypt_layers)
        except re.error as exc:
            raise RecipeArgumentError(
                f"encrypt_layers={encrypt_layers!r} is not a valid regex: {exc}"
            ) from None
        return encrypt_layers
    if (
        isinstance(encrypt_layers, (list, tuple))
        and encrypt_layers
        and all(isinstance(n, str) and n for n in encrypt_layers)
    ):
        return "^(?:" + "|".join(re.escape(n) for n in encrypt_layers) + ")$"
    raise RecipeArgumentError(
        "encrypt_layers must be None (every float layer), a non-empty list of layer names or "
        f"a regex string, got {encrypt_layers!r}"
    )
