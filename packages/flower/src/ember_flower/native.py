"""Flower's own deployment of an app, for comparisons (tests, benchmarks/flower_overhead.py):
``flower-superlink`` + one ``flower-supernode`` per partition + ``flwr run``, all on loopback,
no Ember in between."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from ember_flower.processes import (
    FlowerError,
    Guarded,
    executable,
    flower_env,
    free_port,
    listening,
)
from ember_flower.site import node_config_arg


def run_native(
    app: Path,
    num_supernodes: int,
    folder: Path,
    run_config: dict[str, Any] | None = None,
    timeout: float = 600.0,
) -> str:
    """Run ``app`` on Flower's own deployment in ``folder``; returns Flower's final status
    (``finished:completed`` when it worked). Every process is ended before it returns."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    processes: list[Guarded] = []
    deadline = time.monotonic() + timeout

    def home(name: str) -> Path:
        path = folder / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    try:
        processes.append(
            Guarded(
                [
                    executable("flower-superlink"),
                    "--insecure",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--disable-runtime-dependency-installation",
                ],
                flower_env(home("superlink")),
                folder / "superlink.log",
                10.0,
                cwd=home("superlink"),
            )
        )
        while not listening(port):
            if time.monotonic() > deadline or not processes[0].alive():
                raise FlowerError(f"the SuperLink did not start: {processes[0].tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                processes[0].process.wait(0.2)
        for i in range(num_supernodes):
            node = home(f"supernode-{i}")
            processes.append(
                Guarded(
                    [
                        executable("flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{port}",
                        "--port",
                        str(free_port()),
                        "--node-config",
                        node_config_arg({"partition-id": i, "num-partitions": num_supernodes}),
                    ],
                    flower_env(node),
                    folder / f"supernode-{i}.log",
                    10.0,
                    cwd=node,
                )
            )
        cli = home("cli")
        (cli / "config.toml").write_text(
            f'[superlink]\ndefault = "native"\n\n[superlink.native]\n'
            f'address = "127.0.0.1:{port}"\ninsecure = true\n',
            encoding="utf-8",
        )
        env = flower_env(cli)
        command = [executable("flwr"), "run", str(app), "native", "--format", "json"]
        if run_config:
            command += [
                "--run-config",
                " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items()),
            ]
        out = subprocess.run(
            command, capture_output=True, env=env, cwd=app, timeout=timeout, check=True
        ).stdout.decode()
        run_id = str(json.loads(out[out.index("{") :])["run-id"])
        remaining = max(1.0, deadline - time.monotonic())
        with open(folder / "run.log", "wb") as log:  # follows the run to its end
            subprocess.run(
                [executable("flwr"), "log", run_id],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=remaining,
                check=False,
            )
        listed = subprocess.run(
            [executable("flwr"), "ls", "--run-id", run_id, "--format", "json"],
            capture_output=True,
            env=env,
            timeout=60,
            check=True,
        ).stdout.decode()
        return str(json.loads(listed[listed.index("{") :])["runs"][0]["status"])
    finally:
        for process in reversed(processes):
            process.stop()
