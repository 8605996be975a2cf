"""Recipes: jobs described in Python. Framework packages add theirs (``ember recipe list``)."""

from ember.recipes.base import Recipe
from ember.recipes.fedavg import FedAvgRecipe, NumpyFedAvgRecipe
from ember.recipes.helpers import add_cross_site_evaluation, add_experiment_tracking
from ember.recipes.validation import RecipeArgumentError

__all__ = [
    "FedAvgRecipe",
    "NumpyFedAvgRecipe",
    "Recipe",
    "RecipeArgumentError",
    "add_cross_site_evaluation",
    "add_experiment_tracking",
]
