"""Pluggy markers for the project name ``ember``."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "ember"
ENTRY_POINT_GROUP = "ember"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
