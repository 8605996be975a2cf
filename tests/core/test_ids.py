"""Unguessable ids made without a system call each (task ids, download references)."""

from __future__ import annotations

import os
import re

from ember.common.ids import random_hex_id


def test_ids_have_uuid4_hex_shape_and_do_not_repeat() -> None:
    ids = [random_hex_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_takes_a_fresh_key_and_makes_other_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        os.close(read)
        os.write(write, "".join(random_hex_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    parent = "".join(random_hex_id() for _ in range(3))
    child = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 96
    assert {child[i : i + 32] for i in range(0, 96, 32)}.isdisjoint(
        parent[i : i + 32] for i in range(0, 96, 32)
    )
