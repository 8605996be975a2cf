"""Ember with TensorFlow / Keras. Importing this package does not import tensorflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ember-tf")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0"
