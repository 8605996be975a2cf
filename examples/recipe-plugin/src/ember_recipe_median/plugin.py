"""The plugin's hook module, named by the ``ember`` entry point.

Ember imports it whenever it loads plugins (every ``ember`` command, every job), so it
imports nothing but :mod:`ember.plugins` and names the recipe by a lazy ``module:Class``
target: numpy and the recipe module are imported only when the recipe is used or shown.
"""

from __future__ import annotations

from ember.plugins import RecipeEntry, hookimpl


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    """The recipes this plugin adds (``ember recipe list``)."""
    return [
        RecipeEntry(
            name="numpy-median",  # <framework>-<algorithm>
            target="ember_recipe_median.recipe:MedianRecipe",
            framework="numpy",
            algorithm="Median",
            description="FedAvg with a robust server: coordinate-wise median or trimmed mean",
        )
    ]
