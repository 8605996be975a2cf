"""ember-sklearn's hook module: names its recipes lazily and imports no scikit-learn."""

from __future__ import annotations

from ember.plugins import RecipeEntry, hookimpl

_RECIPES = "ember_sklearn.recipes"


@hookimpl
def ember_recipes() -> list[RecipeEntry]:
    return [
        RecipeEntry(
            name="sklearn-fedavg",
            target=f"{_RECIPES}:SklearnFedAvgRecipe",
            framework="sklearn",
            algorithm="FedAvg",
            description="Linear models (SGD, logistic regression) averaged by sample count",
        ),
        RecipeEntry(
            name="sklearn-kmeans",
            target=f"{_RECIPES}:KMeansFedAvgRecipe",
            framework="sklearn",
            algorithm="KMeans",
            description="Federated mini-batch k-means: exact aggregation of centre sums and counts",
        ),
        RecipeEntry(
            name="sklearn-svm",
            target=f"{_RECIPES}:SVMFedAvgRecipe",
            framework="sklearn",
            algorithm="SVM",
            description="SVM fitted by the server on the union of the sites' support vectors",
        ),
    ]
