"""XGBoost's federated server as a child process of the server's job process.

``python -m ember_xgboost.federated_server --world-size N --tls DIR`` starts the server on
a free port with mutual TLS, prints ``{"port": P}`` on one line, and runs until its stdin
closes: the job process holds the pipe, so the server ends when the job ends, is aborted
or is killed (XGBoost's server does not stop by itself).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from ember.errors import EmberError
from ember.tunnel import LoopbackTls


class FederatedServerError(EmberError, RuntimeError):
    """XGBoost's federated server did not start or stopped during the job."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--tls", required=True, help="folder with server.key/crt, client.crt")
    parser.add_argument("--timeout", type=int, default=300)
    args = parser.parse_args(argv)
    from xgboost.federated import FederatedTracker

    tls = Path(args.tls)
    tracker = FederatedTracker(
        n_workers=args.world_size,
        port=0,
        secure=True,
        server_key_path=str(tls / "server.key"),
        server_cert_path=str(tls / "server.crt"),
        client_cert_path=str(tls / "client.crt"),
        timeout=args.timeout,
    )
    tracker.start()
    print(json.dumps({"port": int(tracker.worker_args()["dmlc_tracker_port"])}), flush=True)
    threading.Thread(target=tracker.wait_for, daemon=True).start()
    sys.stdin.read()  # returns at EOF: the job process closed the pipe or is gone
    os._exit(0)


class FederatedServer:
    """The running child process (see the module docstring)."""

    def __init__(self, world_size: int, tls: LoopbackTls, log: IO[bytes], timeout: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ember_xgboost.federated_server",
                f"--world-size={world_size}",
                f"--tls={tls.folder}",
                f"--timeout={timeout}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the child prints its port first, or dies
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise FederatedServerError(
                f"XGBoost's federated server did not start (exit code "
                f"{self.process.returncode}); its output is in the server's log folder"
            ) from None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits) and reap it; killed if it lingers."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    main()
