"""ember-edge's hook module: registers nothing yet (the FedBuff recipe comes next)."""

from __future__ import annotations
