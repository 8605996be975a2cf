"""ember-tf tests: TensorFlow quiet and on one thread; the test scripts' folder importable.

No ``__init__.py`` here, and no module named ``tensorflow``/``keras``/``tf``: nothing may
shadow a package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# before tensorflow is imported, here and in every process a test starts
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # the same bits on every run

SCRIPTS = Path(__file__).parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
