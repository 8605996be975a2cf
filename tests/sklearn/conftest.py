"""ember-sklearn tests: the test scripts' folder is importable (``sk_data``).

No ``__init__.py`` here: with ``tests/`` on ``sys.path`` a regular package named ``sklearn``
would shadow scikit-learn.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
