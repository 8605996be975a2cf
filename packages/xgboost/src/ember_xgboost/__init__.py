"""Federated XGBoost for Ember: horizontal and vertical histogram-based training over
XGBoost's federated collective (tunnelled through Ember, sites open no port), tree-based
bagging and cyclic training. Recipes are in :mod:`ember_xgboost.recipes`; a site's data
comes from an :class:`XGBDataLoader`."""

from ember_xgboost.data_loader import XGBDataLoader

__all__ = ["XGBDataLoader"]
