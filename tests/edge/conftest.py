"""ember-edge tests: the test scripts' folder is importable (``edge_digits``).

No ``__init__.py`` here, like tests/sklearn.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
