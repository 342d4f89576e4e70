"""Bench data: a realistic run of the trial of a given size, as import lines (issue #7).

The lines come from :func:`ledger.simulation.demo.generate_trial`, the simulated
NFH-MSC-CMV-2014 run (valid, eligible where they should be, with corrections,
voids and late entries; every line carries a client ``id``), scaled to the number
of events asked for and cut at exactly that many lines.  The lines are in entry
order, so any prefix is a valid import (SPEC section 6: a participant's screening
comes first, a target before its correction).

    python bench/generate.py 1000000 /tmp/trial-1m.jsonl
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ledger.simulation.demo import generate_trial, write_jsonl

SEED = 2014


def trial_lines(events: int, seed: int = SEED) -> list[dict]:
    """The first ``events`` import lines of a simulated trial large enough to hold them."""
    sample = generate_trial(200, seed)
    per_participant = len(sample) / 200
    participants = max(1, math.ceil(events / per_participant * 1.02))
    while True:
        lines = generate_trial(participants, seed)
        if len(lines) >= events:
            return lines[:events]
        participants = math.ceil(participants * 1.1)


def write_trial(events: int, path: Path, seed: int = SEED) -> Path:
    """Write the bench file of ``events`` lines to ``path`` unless it is already there."""
    if not path.exists():
        partial = path.with_suffix(".partial")
        write_jsonl(trial_lines(events, seed), partial)
        partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("events", type=int)
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    write_trial(args.events, args.path, args.seed)


if __name__ == "__main__":
    main()
