"""ember-flower's hook module: registers FlowerRecipe and the flower.* settings; imports no
flwr."""

from __future__ import annotations

from ember.config import Setting
from ember.plugins import RecipeEntry, hookimpl


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            name="flower",
            target="ember_flower.recipe:FlowerRecipe",
            framework="flower",
            algorithm="Flower app",
            description="A Flower app (ServerApp + ClientApp) run unmodified, its traffic "
            "tunnelled through Ember",
        )
    ]


@hookimpl
def ember_config_settings() -> list[Setting]:
    from ember_flower.settings import FLOWER_SETTINGS

    return list(FLOWER_SETTINGS)
