"""Ember's PyTorch package. Importing it does not import torch."""

__version__ = "0.1.0"
