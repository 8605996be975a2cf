"""SimEnv's console: the live display stays at the bottom of a terminal while the sites'
script lines scroll above it, each whole and prefixed by its site; plain lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from ember.config import ConfigError
from ember.runtime.progress import Progress

TESTS = Path(__file__).resolve().parents[1]
LINES = 15  # chatty_client.LINES

JOB = """
import sys
sys.path.insert(0, {tests!r})
from support.sim import numpy_recipe
from ember import SimEnv

recipe = numpy_recipe("chatty_client.py", num_rounds=2, launch_external_process={external})
run = recipe.execute(SimEnv(num_clients=2, workspace_root={ws!r}))
print("STATUS", run.get_status())
"""


def _job(tmp_path: Path, external: bool) -> list[str]:
    code = JOB.format(tests=str(TESTS), ws=str(tmp_path / "ws"), external=external)
    return [sys.executable, "-c", code]


def _run_in_a_terminal(argv: list[str]) -> bytes:
    """Everything ``argv`` writes to a pseudo-terminal 100 columns wide."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdout and stderr are the terminal
        os.environ.update({"COLUMNS": "100", "LINES": "40", "TERM": "xterm"})
        os.execv(argv[0], argv)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 120)
            if not ready:
                break
            try:
                data = os.read(fd, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")[-2000:]
    return bytes(out)


_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def _screen(raw: bytes) -> list[str]:
    """The lines a terminal shows after ``raw`` (carriage return, line feed, erase line,
    cursor up; colours and other sequences ignored): enough for rich's live display."""
    lines = [""]
    row = col = 0
    text = raw.decode("utf-8", errors="replace")
    i = 0
    while i < len(text):
        match = _CSI.match(text, i)
        if match:
            arg, op = match.groups()
            if op == "K":
                lines[row] = lines[row][:col] if arg in ("", "0") else ""
            elif op == "A":
                row = max(0, row - int(arg or 1))
            i = match.end()
            continue
        ch = text[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        elif ch == "\x1b":  # another escape (cursor visibility ...)
            end = i + 1
            while end < len(text) and not text[end].isalpha():
                end += 1
            i = end
        elif ch >= " ":
            line = lines[row].ljust(col)
            lines[row] = line[:col] + ch + line[col + 1 :]
            col += 1
        i += 1
    return [line.rstrip() for line in lines]


def _script_lines(sites: int = 2, rounds: int = 2) -> list[str]:
    return [
        f"[site-{s}] site-{s} round {r} line {i} end"
        for s in range(1, sites + 1)
        for r in range(rounds)
        for i in range(LINES)
    ]


def test_on_a_terminal_the_display_stays_below_whole_prefixed_script_lines(
    tmp_path: Path,
) -> None:
    screen = _screen(_run_in_a_terminal(_job(tmp_path, external=False)))
    assert "STATUS FINISHED:COMPLETED" in screen, screen[-20:]
    for line in _script_lines():
        assert line in screen, f"{line!r} is not a whole line of the terminal"
    assert "[site-1] site-1 round 1 to stderr" in screen
    displays = [i for i, line in enumerate(screen) if line.startswith("test-job round")]
    # drawn in place: one display left on the screen, below every script line
    assert len(displays) == 1, [screen[i] for i in displays]
    last_script = max(i for i, line in enumerate(screen) if line.startswith("[site-"))
    display = screen[displays[0]]
    assert displays[0] > last_script
    assert "round 2/2" in display
    assert "sites 2 done, 0 training, 0 failed" in display
    assert "accuracy=0.6" in display
    assert screen[displays[0] + 1].startswith("test-job: FINISHED:COMPLETED in ")


def test_without_a_terminal_the_progress_is_plain_lines(tmp_path: Path) -> None:
    out = subprocess.run(
        _job(tmp_path, external=True), capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "\x1b" not in out
    assert "\r" not in out
    lines = out.splitlines()
    for line in _script_lines():
        assert line in lines
    assert "test-job: round 1/2 started on 2 sites" in lines
    done = [line for line in lines if line.startswith("test-job: round 2/2 done: ")]
    assert len(done) == 1
    assert "sites 2 done, 0 training, 0 failed  accuracy=0.6" in done[0]
    assert lines[-2].startswith("test-job: FINISHED:COMPLETED in ")
    assert lines[-1] == "STATUS FINISHED:COMPLETED"


def test_the_setting_turns_the_display_off_but_keeps_the_script_lines() -> None:
    class Stream:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return True

    stream = Stream()
    progress = Progress("job", stream=stream, mode="off")  # type: ignore[arg-type]
    progress.start()
    progress.round_started(0, 2, 2)
    progress.script_line("site-1", "hello")
    progress.round_done(0, {"accuracy": 1.0})
    progress.finish("FINISHED:COMPLETED")
    assert stream.text == "[site-1] hello\n"
    plain = Stream()
    progress = Progress("job", stream=plain, mode="plain")  # type: ignore[arg-type]
    progress.key_metric = "loss"
    progress.round_started(0, 2, 2)
    progress.result_received("site-1")
    progress.round_done(0, {"accuracy": 1.0, "loss": 0.25, "note": "text"})
    assert "job: round 1/2 done: sites 1 done, 1 training, 0 failed  loss=0.25 accuracy=1" in (
        plain.text
    )
    with pytest.raises(ConfigError, match=r"sim\.progress must be one of"):
        Progress("job", mode="fancy")


def test_the_round_metrics_plot_has_whole_rounds_and_a_line_per_site() -> None:
    pytest.importorskip("matplotlib")
    from ember.runtime.plots import round_metrics_figure

    rounds = [
        {
            "round": r,
            "metrics": {"accuracy": 0.5 + r / 10},
            "site_metrics": {"site-1": {"accuracy": 0.4 + r / 10}, "site-2": {"accuracy": 0.6}},
        }
        for r in range(3)
    ]
    fig = round_metrics_figure(rounds)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["site-1", "site-2", "aggregate"]
    assert list(ax.get_lines()[-1].get_ydata()) == [0.5, 0.6, 0.7]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks
    assert all(float(t).is_integer() for t in ticks)
    assert round_metrics_figure([{"round": 0, "metrics": {}, "site_metrics": {}}]) is None
