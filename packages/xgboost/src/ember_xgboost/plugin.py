"""ember-xgboost's hook module: registers its recipes by name; imports no xgboost."""

from __future__ import annotations

from ember.plugins import RecipeEntry, hookimpl

_RECIPES = {
    "xgboost-horizontal": (
        "XGBHorizontalRecipe",
        "Histogram",
        "Rows split across sites; XGBoost's federated histogram training, tunnelled",
    ),
    "xgboost-vertical": (
        "XGBVerticalRecipe",
        "Vertical",
        "Columns split across sites (PSI-aligned rows); one label owner",
    ),
    "xgboost-bagging": (
        "XGBBaggingRecipe",
        "Bagging",
        "Tree-based: sites' trees appended (bagging) or boosted in turn (cyclic)",
    ),
}


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            name=name,
            target=f"ember_xgboost.recipes:{cls}",
            framework="xgboost",
            algorithm=algorithm,
            description=description,
        )
        for name, (cls, algorithm, description) in _RECIPES.items()
    ]
