"""Federated XGBoost recipes with NVFlare's names and parameters."""

from ember_xgboost.recipes.bagging import XGBBaggingRecipe
from ember_xgboost.recipes.histogram import XGBHorizontalRecipe, XGBVerticalRecipe

__all__ = ["XGBBaggingRecipe", "XGBHorizontalRecipe", "XGBVerticalRecipe"]
