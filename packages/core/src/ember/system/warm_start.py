"""A spare job process, started ahead of its job: ``python -m ember.system.warm_start MODULE``.

It imports ``MODULE`` (``ember.system.server_job_process`` or
``ember.system.client_job_process``) and the modules its ``WARM_IMPORTS`` names, then waits
for one line on its stdin from the daemon that started it: JSON ``{"args": [...], "log":
PATH}``. It then sends its output to ``PATH``, reads stdin from ``/dev/null`` and runs
``MODULE.main()`` with ``args`` as ``sys.argv[1:]``, exactly as ``python -m MODULE *args``
would, less the imports. An end of stdin without a line (the daemon stopped, or was killed)
ends it at once; so does its daemon's end (its lifeline), even in the middle of its imports.
See :class:`ember.system.lifeline.JobProcessStarter`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys


def main() -> None:
    from ember.system.lifeline import watch_parent

    module_name = sys.argv[1]
    watch_parent(os.getppid())  # a spare ends with its daemon
    module = importlib.import_module(module_name)
    for extra in getattr(module, "WARM_IMPORTS", ()):
        importlib.import_module(extra)
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return  # closed without a job: the daemon stops, or does without spares
    order = json.loads(line)
    out = os.open(str(order["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = [str(module.__file__), *[str(a) for a in order["args"]]]
    module.main()


if __name__ == "__main__":
    main()
