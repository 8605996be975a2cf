"""ember-edge's hook module: registers EdgeFedBuffRecipe, the edge.* settings and each
site's gateway certificate in its startup kit; imports neither numpy nor the controller."""

from __future__ import annotations

from typing import Any

from ember.config import Setting
from ember.plugins import RecipeEntry, hookimpl


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            name="edge-fedbuff",
            target="ember_edge.recipes:EdgeFedBuffRecipe",
            framework="edge",
            algorithm="FedBuff",
            description="Buffered asynchronous FL for fleets of devices behind aggregator sites",
        ),
        RecipeEntry(
            name="edge-et-fedbuff",
            target="ember_edge.recipes:ETFedBuffRecipe",
            framework="edge",
            algorithm="FedBuff",
            description="FedBuff for devices training ExecuTorch .pte programs (ember-edge[et])",
        ),
    ]


@hookimpl
def ember_config_settings() -> list[Setting]:
    from ember_edge.settings import EDGE_SETTINGS

    return list(EDGE_SETTINGS)


@hookimpl
def ember_provision_kit_files(
    project: Any, kind: str, name: str, issue_certificate: Any
) -> dict[str, bytes]:
    """Each site's device-gateway certificate (``startup/gateway.crt`` and ``gateway.key``):
    a server certificate signed by the project's root CA, for the site's ``hosts`` from the
    project file plus ``localhost`` and ``127.0.0.1``, so devices verify the gateway with the
    project's ``rootCA.pem``."""
    if kind != "client":
        return {}
    spec = next((c for c in getattr(project, "clients", ()) if c.name == name), None)
    hosts = [*getattr(spec, "hosts", ()), "localhost", "127.0.0.1"]
    cert, key = issue_certificate(name, list(dict.fromkeys(hosts)))
    return {"gateway.crt": cert, "gateway.key": key}
