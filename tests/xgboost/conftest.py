"""ember-xgboost tests: the test data loaders' folder importable (recipes bundle it)."""

from __future__ import annotations

import sys
from pathlib import Path

LOADERS = Path(__file__).parent / "loaders"
if str(LOADERS) not in sys.path:
    sys.path.insert(0, str(LOADERS))
