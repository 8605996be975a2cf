"""ember-sklearn's recipes (importing them does not import scikit-learn)."""

from ember_sklearn.recipes.kmeans import KMeansFedAvgRecipe
from ember_sklearn.recipes.linear import SklearnFedAvgRecipe
from ember_sklearn.recipes.svm import SVMFedAvgRecipe

__all__ = ["KMeansFedAvgRecipe", "SVMFedAvgRecipe", "SklearnFedAvgRecipe"]
