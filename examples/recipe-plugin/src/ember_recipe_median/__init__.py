"""ember-recipe-median: a third-party Ember recipe plugin with its own server workflow.

``MedianRecipe`` (registered as ``numpy-median``) is FedAvg whose server takes, each round,
the coordinate-wise median or trimmed mean of the sites' models instead of their average, so
one site sending a wild model cannot drag the global model along. Nothing is imported here:
``ember recipe list`` loads only :mod:`ember_recipe_median.plugin`.
"""
