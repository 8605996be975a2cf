"""Import what only some users need, naming the ``ember-core`` extra that installs it.

``pip install ember-core`` installs what every user needs. matplotlib (the round-metrics
PNG), libcst (``ember migrate-nvflare``) and tensorboardX (experiment tracking) come with
the extras ``plots``, ``migrate`` and ``tracking`` (``all`` has the three). Each is imported
only where it is used, through :func:`require`, so a missing one fails with a
:class:`~ember.errors.MissingDependencyError` that says what to install. This module imports
nothing of Ember's but :mod:`ember.errors`, so every layer can use it.

Example::

    from ember.extras import require

    figure = require("matplotlib.figure", "plots", "the round-metrics plot")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ember.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``; if it cannot be, raise MissingDependencyError naming ``extra``.

    ``purpose`` says what needs it ("the round-metrics plot"); it starts the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        missing = exc.name is not None and (exc.name == module or module.startswith(exc.name + "."))
        why = "which is not installed" if missing else f"which failed to import ({exc})"
        raise MissingDependencyError(
            f"{purpose} needs {top}, {why}: pip install 'ember-core[{extra}]'", name=top
        ) from exc


__all__ = ["require"]
