"""Per-script ``sys.argv`` so in-process scripts each see their own ``train_args``."""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator
from typing import Any, SupportsIndex, overload


class ThreadArgv(list[str]):
    """A ``sys.argv`` whose contents depend on the calling script's context: its thread, or
    its greenlet on a carrier (argparse reads it lazily)."""

    def __init__(self, base: list[str]) -> None:
        super().__init__(base)
        # one per process (thread_argv installs it once)
        self._argv: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
            "ember_script_argv", default=None
        )

    def set_for_script(self, argv: list[str] | None) -> None:
        self._argv.set(argv)

    def _current(self) -> list[str]:
        argv = self._argv.get()
        return argv if argv is not None else list(super().__iter__())

    @overload
    def __getitem__(self, i: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: Any) -> Any:
        return self._current()[i]

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __contains__(self, item: object) -> bool:
        return item in self._current()

    def __repr__(self) -> str:
        return repr(self._current())

    def __eq__(self, other: object) -> bool:
        return self._current() == other

    __hash__ = None


def thread_argv() -> ThreadArgv:
    """Install (once) and return the per-thread ``sys.argv``."""
    if not isinstance(sys.argv, ThreadArgv):
        sys.argv = ThreadArgv(list(sys.argv))
    return sys.argv
