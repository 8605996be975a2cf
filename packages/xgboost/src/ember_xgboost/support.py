"""Whether the installed XGBoost can train federated, said before a job starts."""

from __future__ import annotations

from typing import Any

from ember.errors import EmberError, MissingDependencyError

NEWEST_FEDERATED = "3.2"


class XGBoostBuildError(EmberError, RuntimeError):
    """The installed XGBoost lacks what a federated job needs."""


def require_xgboost() -> Any:
    """The ``xgboost`` module, or a clear error naming what to install."""
    try:
        import xgboost
    except ImportError as exc:
        raise MissingDependencyError(
            f"federated XGBoost needs xgboost, which is not importable ({exc}); install "
            f"ember-xgboost's pinned version: pip install 'xgboost=={NEWEST_FEDERATED}.0'"
        ) from None
    return xgboost


def require_federated(column_split: bool = False) -> Any:
    """``xgboost`` if its build has the federated communicator (and column split, when
    asked); otherwise an :class:`XGBoostBuildError` naming the version to install."""
    xgb = require_xgboost()
    info = xgb.build_info()
    if not info.get("USE_FEDERATED"):
        raise XGBoostBuildError(
            f"xgboost {xgb.__version__} was built without the federated communicator "
            "(USE_FEDERATED is off: xgboost-cpu and xgboost >= 3.3 from PyPI lack it); "
            f"install pip install 'xgboost=={NEWEST_FEDERATED}.0' (Python 3.11) or build "
            "XGBoost with -DPLUGIN_FEDERATED=ON"
        )
    if column_split and not hasattr(getattr(xgb, "core", None), "DataSplitMode"):
        raise XGBoostBuildError(
            f"xgboost {xgb.__version__} has no column split (DataSplitMode): vertical "
            f"training needs xgboost 2.x or 3.0-{NEWEST_FEDERATED}"
        )
    return xgb
