"""ember-pt tests: the test scripts' folder is importable (``pt_tiny``).

No ``__init__.py`` here, and no module named ``torch``/``pt``: nothing may shadow a package.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
