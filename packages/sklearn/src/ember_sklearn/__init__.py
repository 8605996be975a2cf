"""ember-sklearn: federated scikit-learn for Ember.

Recipes (``ember_sklearn.recipes``): ``SklearnFedAvgRecipe`` (linear models),
``KMeansFedAvgRecipe`` (federated mini-batch k-means) and ``SVMFedAvgRecipe`` (SVM on the
union of the sites' support vectors). Training scripts use the helpers in
``ember_sklearn.client``. Importing this package does not import scikit-learn.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ember-sklearn")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
