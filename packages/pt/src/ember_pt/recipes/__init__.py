"""ember-pt's recipes (importing them does not import torch)."""

from ember_pt.recipes.fedavg import FedAvgRecipe

__all__ = ["FedAvgRecipe"]
