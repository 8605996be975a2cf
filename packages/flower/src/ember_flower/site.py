"""The sites' side of a Flower job: the body of the script FlowerRecipe bundles.

Task ``flower`` with meta ``{"flower": "start"}``: start a SuperNode (under the guard of
:mod:`ember_flower.processes`) pointed at this site's loopback endpoint of the job's tunnel
(``meta["tunnel_address"]``, filled in by the TunnelSiteLink site workflow), with the node
config the server gave this site (``partition-id``, ``num-partitions``); answer once it is
running. ``{"flower": "stop"}``: stop it and answer with its exit code. When the job ends
(or is aborted) the script stops it too; if the site's process dies, the guard does.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ember.config import get_setting
from ember.tunnel import ADDRESS_META
from ember_flower.processes import FlowerError, Guarded, executable, flower_env, free_port

SITE_SCRIPT = "flower_site.py"
#: the site script: the same bytes in every job (a site without custom code trusts its hash)
SITE_SCRIPT_SOURCE = b'''"""This site's Flower SuperNode (written by ember-flower's recipe)."""

from ember_flower.site import run_site

run_site()
'''
ACTION = "flower"
NODE_CONFIG = "node_config"


def node_config_arg(config: dict[str, Any]) -> str:
    """Flower's ``--node-config`` string: ``key=value`` pairs, strings quoted."""
    parts = []
    for key, value in config.items():
        text = (
            f'"{value}"'
            if isinstance(value, str)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        parts.append(f"{key}={text}")
    return " ".join(parts)


def start_supernode(site: str, address: str, node_config: dict[str, Any], folder: Path) -> Guarded:
    """A SuperNode for ``site`` talking to the SuperLink at ``address`` (the tunnel)."""
    home = folder / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    return Guarded(
        [
            executable("flower-supernode"),
            "--insecure",
            "--superlink",
            address,
            "--port",
            str(free_port()),
            "--node-config",
            node_config_arg(node_config),
        ],
        flower_env(home),
        folder / f"flower_supernode_{site}.log",
        float(get_setting("flower.stop_timeout")),
        cwd=home,
    )


def run_site() -> None:
    """Answer the server's Flower tasks until the job ends; a SuperNode that exits by itself
    fails the site (the server then stops the run, naming the site)."""
    import ember.client as flare
    from ember.common import FLModel

    flare.init()
    site = flare.get_site_name()
    folder = Path(tempfile.mkdtemp(prefix=f"ember-flower-{flare.get_job_id()}-{site}-"))
    poll = float(get_setting("flower.poll_interval"))
    supernode: Guarded | None = None
    try:
        while True:
            # while a SuperNode runs, wake every poll to check it (flare.is_running() would
            # block until the next task); receive() returns None before its timeout only
            # when the job has ended
            asked = time.monotonic()
            task = flare.receive(timeout=poll if supernode is not None else None)
            if task is None:
                if supernode is not None and not supernode.alive():
                    code = supernode.stop()
                    raise FlowerError(
                        f"{site}'s Flower SuperNode exited (code {code}): {supernode.tail()}"
                    )
                if supernode is None or time.monotonic() - asked < poll * 0.9:
                    break  # the job ended (or was aborted)
                continue
            action = task.meta.get(ACTION)
            if action == "start":
                address = task.meta.get(ADDRESS_META)
                if not address:
                    raise FlowerError(
                        f"{site}'s task names no tunnel address: the job's client app must "
                        "use the ember.site_workflows:TunnelSiteLink site workflow"
                    )
                if supernode is None:
                    supernode = start_supernode(
                        site, str(address), dict(task.meta.get(NODE_CONFIG) or {}), folder
                    )
                    print(f"{site}: Flower SuperNode started, Fleet API through {address}")
                if not supernode.alive():
                    raise FlowerError(f"{site}'s SuperNode exited at once: {supernode.tail()}")
                flare.send(FLModel(params={}, meta={ACTION: "started"}))
            elif action == "stop":
                code = supernode.stop() if supernode is not None else None
                tail = supernode.tail(4000) if supernode is not None else ""
                supernode = None
                print(f"{site}: Flower SuperNode stopped (exit code {code}); its log ends:")
                print(tail)
                meta = {ACTION: "stopped", "exit_code": code, "log_tail": tail}
                flare.send(FLModel(params={}, meta=meta))
            else:
                raise FlowerError(f"{site} got a task with unknown Flower action {action!r}")
    finally:
        if supernode is not None:
            supernode.stop()
        shutil.rmtree(folder, ignore_errors=True)
