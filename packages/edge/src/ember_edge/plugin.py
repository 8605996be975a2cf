"""ember-edge's hook module: registers EdgeFedBuffRecipe and the edge.* settings; imports
neither numpy nor the controller."""

from __future__ import annotations

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
