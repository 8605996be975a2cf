"""The memory a connection's abandoned fragments held comes back when it closes (issue 28):
the hub runs in a subprocess whose RSS is read from /proc; a node sends it three rounds of
fragments of messages it never finishes, disconnecting after each.

Scaled down from the issue's 3 x 1 GiB to 3 x 96 MiB (the suite's machine is shared and
small); the leak found was the whole of what was sent (372 -> 1,164 -> 1,651 -> 2,227 MiB),
so a 96 MiB round that stayed reachable would show as +100 % or more, far above the 10 %
allowed. The hub runs with a fixed glibc mmap threshold (MALLOC_MMAP_THRESHOLD_=256 KiB):
with glibc's dynamic threshold, freed 1 MiB fragments stay in the heap as free space
(measured: 126 -> 184 MiB with everything freed), which is the allocator, not a leak; with it
fixed, RSS measures what is reachable (62 -> 62 MiB; without the fix, 68 -> 153 MiB). Before
each reading the hub runs malloc_trim(0), and "before" is read after a warm-up of one
abandoned and one finished round: on a loaded machine gRPC's smaller buffers raise the heap's
high-water mark and its thread pools grow once (seen: 69 -> 81 MiB under the parallel suite
without either), which is not a leak either; a leak would add the 288 MiB of the three
measured rounds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

from ember.config import Config, use_config
from ember.net import NetNode
from ember.net.frames import REQUEST, Header, OutFrame

HUB = textwrap.dedent(
    """
    import sys
    from ember.config import Config, use_config
    from ember.net import Hub

    def rss() -> int:
        import ctypes, gc
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap pages back: RSS = what is held
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    with use_config(Config({"net.fragment_size": 1 << 20, "net.heartbeat_interval": 2.0})):
        hub = Hub("server", "127.0.0.1:0", None, lambda cn, name: None).start()
    hub.local.register_handler("echo", lambda sender, body: b"ok")
    print(hub.port, flush=True)
    for line in sys.stdin:
        if line.strip() == "connected":
            print(len(hub.connected()), flush=True)
        else:
            print(rss(), flush=True)
    """
)

ROUND = 96 << 20
FRAGMENT = 1 << 20


def test_abandoned_fragments_are_freed_when_their_connection_closes() -> None:
    hub = subprocess.Popen(
        [sys.executable, "-c", HUB],
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "262144"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert hub.stdin is not None
    assert hub.stdout is not None

    def ask(what: str) -> int:
        hub.stdin.write(what + "\n")  # type: ignore[union-attr]
        hub.stdin.flush()  # type: ignore[union-attr]
        return int(hub.stdout.readline())  # type: ignore[union-attr]

    config = Config({"net.fragment_size": FRAGMENT, "net.reconnect_backoff_min": 0.05})
    try:
        port = int(hub.stdout.readline())
        payload = bytes(ROUND // 4)

        def one_round(finish: bool) -> None:
            with use_config(config):
                node = NetNode("site-1", f"127.0.0.1:{port}", None).start(10.0)
            try:
                if finish:  # a finished message of the same size: the allocator's warm-up
                    for _ in range(4):
                        assert node.request("server", "echo", payload, 30) == b"ok"
                    return
                link = node._link
                assert link is not None
                for ident in range(4):  # 4 messages, none finished
                    frame = OutFrame(Header(REQUEST, 0, ident, "site-1", "server", "echo"),
                                     payload + b"tail", FRAGMENT)  # fmt: skip
                    while True:
                        msg = frame.next_fragment()
                        if frame.done:
                            break  # never send the last one
                        assert link.outbox.put_fragment(msg)
                assert node.request("server", "echo", b"", 30) == b"ok"  # all of it arrived
            finally:
                node.close()
            gone = threading.Event()
            while ask("connected") and not gone.wait(0.05):  # the hub saw it go
                pass

        # warm-up: one abandoned and one finished round, so the hub's thread pools and the
        # allocator's arenas have grown to what such a round needs before "before"
        one_round(finish=False)
        one_round(finish=True)
        before = ask("rss")
        for _ in range(3):
            one_round(finish=False)
        after = ask("rss")
        print(f"hub RSS before {before >> 20} MiB, after 3 x {ROUND >> 20} MiB: {after >> 20} MiB")
        assert after <= before * 1.10, (before >> 20, after >> 20)
    finally:
        hub.kill()
        hub.wait()
