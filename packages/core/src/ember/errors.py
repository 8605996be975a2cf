"""The root of every exception Ember raises.

``except ember.EmberError`` catches them all; each keeps the built-in base it always had
(``ValueError``, ``RuntimeError``, ...), so existing ``except`` clauses still match. Every
message names the problem and the fix. This module imports nothing of Ember's, so every
layer can use it.

Example::

    from ember.errors import EmberError

    class MyPluginError(EmberError, ValueError):
        '''A third party's error: the CLI prints its message without a traceback.'''
"""

from __future__ import annotations


class EmberError(Exception):
    """Base of every error Ember raises; the CLI prints its message without a traceback."""


class RecipeArgumentError(EmberError, ValueError):
    """An argument of a recipe or an env is wrong; the message names it and what it must be."""


class MissingDependencyError(EmberError, ImportError):
    """An optional dependency is not installed; the message names what to ``pip install``."""


__all__ = ["EmberError", "MissingDependencyError", "RecipeArgumentError"]
