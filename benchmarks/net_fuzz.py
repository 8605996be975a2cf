"""A longer fuzz run of the wire framing and the hub's header parser (the suite runs the
same properties, tests/core/test_net_fuzz.py, with a budget of 150 examples each):
``python benchmarks/net_fuzz.py [EXAMPLES]`` (default 20,000 each). Prints the time each
property took; any failure is raised with hypothesis's shrunk example."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from core import test_net_fuzz as fuzz

PROPERTIES = (
    "test_random_bytes_are_fragments_or_protocol_errors",
    "test_mutated_fragments_of_real_frames_are_frames_or_protocol_errors",
    "test_unmutated_frames_round_trip",
    "test_header_parser_takes_any_bytes",
)


def main() -> None:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for name in PROPERTIES:
        test = getattr(fuzz, name)
        test._hypothesis_internal_use_settings = settings(
            test._hypothesis_internal_use_settings,
            max_examples=examples,
            suppress_health_check=list(HealthCheck),
        )
        start = time.perf_counter()
        test()
        print(f"{name}: {examples} examples, {time.perf_counter() - start:.1f} s, no failure")


if __name__ == "__main__":
    main()
