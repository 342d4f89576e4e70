"""The read model's bench (issues 12 and 14): what keeping it on the write side costs, and the reads.

    python bench/readmodel.py                 # 100k events, SQLite and PostgreSQL
    python bench/readmodel.py --events 1000000 --no-pg
    python bench/readmodel.py --json out.json # also save the figures

Write side: the same import into a new store with the read model (the writes
add its rows in their transaction) and without it (its tracking table dropped
after ``init``: the writes then add nothing), and the median of one shell
append on a small store, both ways.  Reads: ``status`` and ``endpoints`` at
several ``--as-of`` and ``--known-at`` on a store of the same file imported in
:data:`CHUNKS` batches (so that known-at moments between them see part of it),
each with its ratio to a full ``rebuild`` of that store and its peak memory.  Every
command is a fresh ``trial-ledger`` process, start-up included
(:func:`run.timed`).  Run the 1M-event store only under ``flock /tmp/bench.lock``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import statistics
import sys
from pathlib import Path
from typing import Any

from generate import write_trial
from history import cmv_append
from run import PG_DEFAULT, SCREENING, cli, pg_drop, pg_reachable, remove_sqlite

APPENDS = 9
# The reads' store is the bench file imported in this many batches, each recorded at its own moment.
CHUNKS = 4
# Runs of each read at each pair; the median is the figure (the machine is noisy).
RUNS = 3
# (as-of, known-at) pairs the reads are timed at: the trial's middle and end as known now; as known
# once the first, second and third batch were recorded; and before anything was recorded.  A known-at
# given as a number is the moment after that many batches.
READS: tuple[tuple[str, str | int | None], ...] = (
    ("2014-06-30", None),
    ("2015-12-31", None),
    ("2015-12-31", 1),
    ("2016-06-30", 2),
    ("2099-12-31", 3),
    ("2099-12-31", "2000-01-01T00:00:00Z"),
)
TRACKING = "rm_tracking"


def without_read_model(store: str) -> None:
    """Drop the read model's tracking table: the writes then add no rows (``ledger/storage/feed.py``)."""
    if store.startswith("postgres"):
        import psycopg

        base, schema = store.split("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP TABLE "{schema}".{TRACKING}')
        return
    with sqlite3.connect(store) as conn:
        conn.execute(f"DROP TABLE {TRACKING}")


def new_store(store: str, admin: str | None) -> None:
    if admin is None:
        remove_sqlite(Path(store))
    else:
        import psycopg

        schema = store.split("?schema=")[1]
        pg_drop(admin, schema)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    cli(store, "init")


def appends(store: str) -> float:
    """The median seconds of one shell append (a CMV result of one participant)."""
    seconds = []
    for number in range(APPENDS + 1):  # the first warms the bytecode cache
        run = cli(store, *cmv_append(SCREENING["participant"], f"2014-02-{4 + number:02d}"))
        seconds.append(run.seconds)
    return statistics.median(seconds[1:])


def bench_store(store: str, source: Path, small: Path, admin: str | None) -> dict[str, Any]:
    events = sum(1 for _ in source.open("rb"))
    row: dict[str, Any] = {"events": events}
    for kept in (True, False):
        label = "with_read_model" if kept else "without_read_model"
        new_store(store, admin)
        if not kept:
            without_read_model(store)
        imported = cli(store, "import", str(source))
        row[f"import_{label}"] = {"seconds": imported.seconds, "peak_mb": imported.peak_mb}
        if kept:
            row["reads"] = reads(store, chunked(store, source, admin, source.parent))
        new_store(store, admin)
        if not kept:
            without_read_model(store)
        cli(store, "import", str(small))
        row[f"append_{label}"] = {"median_seconds": appends(store)}
    row["import_cost"] = (
        row["import_with_read_model"]["seconds"] / row["import_without_read_model"]["seconds"]
    )
    row["append_cost"] = (
        row["append_with_read_model"]["median_seconds"] / row["append_without_read_model"]["median_seconds"]
    )
    if admin is None:
        remove_sqlite(Path(store))
    else:
        pg_drop(admin, store.split("?schema=")[1])
    return row


def chunked(store: str, source: Path, admin: str | None, work: Path, chunks: int = CHUNKS) -> list[str]:
    """Make ``store`` of ``source`` imported in ``chunks`` batches; the moments between them (UTC).

    Any prefix of a bench file is a valid import (:mod:`generate`), so each
    batch takes the next stretch of lines into the store holding the ones before.
    """
    new_store(store, admin)
    total = sum(1 for _ in source.open("rb"))
    parts = [work / f"chunk-{number}.jsonl" for number in range(chunks)]
    with source.open("rb") as lines:
        for number, part in enumerate(parts):
            with part.open("wb") as out:
                for _ in range(total * (number + 1) // chunks - total * number // chunks):
                    out.write(next(lines))
    moments = []
    for part in parts:
        cli(store, "import", str(part))
        moments.append(dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"))
        part.unlink()
    return moments


def reads(store: str, moments: list[str] | None = None) -> dict[str, Any]:
    """``status`` and ``endpoints`` at each of :data:`READS` (median of :data:`RUNS`), against a ``rebuild``.

    ``moments``: when each batch of the store ended (:func:`chunked`); pairs whose
    known-at names a batch the store does not have are left out.
    """
    rebuilt = cli(store, "--json", "rebuild")
    out: dict[str, Any] = {
        "rebuild": {"seconds": rebuilt.seconds, "peak_mb": rebuilt.peak_mb},
        "batches": len(moments or ()) or 1,
        "cases": [],
    }
    for as_of, known in READS:
        if isinstance(known, int):
            if not moments or known >= len(moments):
                continue
            known_at: str | None = moments[known - 1]
        else:
            known_at = known
        times = ["--as-of", as_of, *(["--known-at", known_at] if known_at else [])]
        for command in ("status", "endpoints"):
            runs = [cli(store, "--json", command, *times) for _ in range(RUNS)]
            seconds = statistics.median(run.seconds for run in runs)
            out["cases"].append(
                {
                    "command": command,
                    "as_of": as_of,
                    "known_at": known_at,
                    "batches_known": known if isinstance(known, int) else None,
                    "seconds": seconds,
                    "runs": [run.seconds for run in runs],
                    "peak_mb": max(run.peak_mb for run in runs),
                    "ratio_to_rebuild": seconds / rebuilt.seconds,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="size of the imported store")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL database for throwaway schemas")
    parser.add_argument("--work", type=Path, default=Path("/tmp/trial-ledger-bench"), help="scratch folder")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    source = write_trial(args.events, args.work / f"trial-{args.events}.jsonl")
    small = args.work / "readmodel-append.jsonl"
    small.write_text(json.dumps(SCREENING) + "\n")
    results: dict[str, Any] = {"sqlite": bench_store(str(args.work / "readmodel.db"), source, small, None)}
    print(f"sqlite: {json.dumps(results['sqlite'])}", flush=True)
    if not args.no_pg and pg_reachable(args.pg):
        store = f"{args.pg}?schema=bench_readmodel"
        results["postgres"] = bench_store(store, source, small, args.pg)
        print(f"postgres: {json.dumps(results['postgres'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    json.dump(results, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
