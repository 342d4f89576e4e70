"""The performance bench of issue #7: import, rebuild, verify and queries at scale.

Writes ``bench/RESULTS.md``, ``bench/results.json`` and ``bench/scaling.png``
(import and rebuild time against store size).  Every figure is measured in the
same run as its baseline (:mod:`baselines`), because the machine is shared and
noisy: read the ratios rather than the absolute times.

    python bench/run.py               # 100k, 300k and 1M events, SQLite and PostgreSQL
    python bench/run.py --quick       # 20k events: the CI smoke run, about a minute (writes to --work)
    python bench/run.py --no-pg       # SQLite only
    python bench/run.py --before DIR  # also time the import of an older source tree
    python bench/run.py --sizes 100000 1000000   # only these store sizes

(``git archive 22a09ab | tar -x -C DIR`` extracts the write path as it was
before issue #7.)

The commands are timed as users run them: a fresh ``trial-ledger`` process,
start-up included, on a file made by :mod:`generate` (prefixes of one
simulated trial, so every size holds the same kind of data).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import baselines
from generate import write_trial
from history import HISTORY_LENGTHS, bench_history, cmv_append
from report import AS_OF, plot, render

from ledger.simulation.demo import generate_trial, write_jsonl

HERE = Path(__file__).resolve().parent
FULL_SIZES = (100_000, 300_000, 1_000_000)
QUICK_SIZES = (20_000,)
# The generated trial the import is timed against the naive raw path on (issue 14).
NAIVE_LINES = 95_000
PG_DEFAULT = os.environ.get("TRIAL_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CLI = [sys.executable, "-c", "import cli; cli.main()"]
APPEND_RUNS = 15
USER = "bench.dm"
GNU_TIME = "/usr/bin/time"
# Children compile their modules once into this cache, as an installed package
# would have them: the environment here may forbid writing bytecode, which would
# make every command pay for compiling the project on each start.
PYCACHE = "/tmp/trial-ledger-bench-pycache"
# A participant of its own for the append timings (SPEC section 6 import format).
SCREENING = {
    "type": "ParticipantScreened",
    "participant": "NFH-900",
    "site": "NFH",
    "effective": "2014-02-03",
    "age_years": 40,
    "sex": "F",
    "refractory_cmv": "infection",
    "consent_date": "2014-02-01",
    "consent_by": "participant",
    "hr": 80,
    "rr": 16,
    "sbp": 120,
    "dbp": 80,
}


@dataclass
class Run:
    """One timed process: wall seconds and peak resident memory (MB)."""

    seconds: float
    peak_mb: float
    output: str = ""

    def rate(self, events: int) -> float:
        return events / self.seconds

    def summary(self, events: int) -> dict[str, float]:
        return {"seconds": self.seconds, "rate": self.rate(events), "peak_mb": self.peak_mb}


@dataclass
class Results:
    """Every figure of one bench run, as written to ``results.json``."""

    quick: bool
    machine: str
    started: str
    command: str
    sizes: list[int]
    naive: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    sqlite: dict[str, Any] = field(default_factory=dict)
    postgres: dict[str, Any] = field(default_factory=dict)
    small: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    readmodel: dict[str, Any] = field(default_factory=dict)


def timed(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run a process to its end: its wall time and its own peak RSS.

    The peak comes from GNU ``time``: a child forked straight from this (large)
    process would report this process's memory as its own peak.
    """
    full_env = {**os.environ, "TRIAL_LEDGER_USER": USER, "PYTHONPYCACHEPREFIX": PYCACHE, **(env or {})}
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    with open(os.devnull, "rb") as stdin, _Capture() as out, _Capture() as peak:
        start = time.perf_counter()
        process = subprocess.run(
            [GNU_TIME, "-q", "-f", "%M", "-o", f"/dev/fd/{peak.file.fileno()}", *args],
            stdin=stdin,
            stdout=out.file,
            stderr=subprocess.STDOUT,
            env=full_env,
            pass_fds=(peak.file.fileno(),),
            cwd=cwd,
            check=False,
        )
        seconds = time.perf_counter() - start
        output, peak_kb = out.text(), peak.text().strip().splitlines()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}:\n{output[-2000:]}")
    return Run(seconds, int(peak_kb[-1]) / 1024 if peak_kb else 0.0, output)


class _Capture:
    """A temporary file for a child's output (no pipe to fill up)."""

    def __enter__(self) -> _Capture:
        import tempfile

        self.file = tempfile.TemporaryFile()
        return self

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")

    def __exit__(self, *_: object) -> None:
        self.file.close()


def cli(store: str, *args: str) -> Run:
    return timed([*CLI, "--store", store, *args])


def commands() -> set[str]:
    """The ``trial-ledger`` commands present in this tree (others are skipped, not failed)."""
    text = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    listed = text.split("Commands:", 1)[-1].splitlines()
    return {line.split()[0] for line in listed if line.strip()}


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def prefix(source: Path, events: int, target: Path) -> Path:
    """The first ``events`` lines of ``source`` (a valid import: lines are in entry order)."""
    if not target.exists():
        with source.open("rb") as lines, target.open("wb") as out:
            for number, line in enumerate(lines):
                if number == events:
                    break
                out.write(line)
    return target


# -- SQLite ------------------------------------------------------------------------------------


def bench_sqlite(work: Path, files: dict[int, Path], available: set[str], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"sizes": {}}
    largest = max(files)
    for size, source in sorted(files.items()):
        db = work / f"sqlite-{size}.db"
        remove_sqlite(db)
        row: dict[str, Any] = {}
        imported = cli(str(db), "import", str(source))
        row["import"] = imported.summary(size)
        streamed = json.loads(timed([sys.executable, str(HERE / "stream.py"), str(db)]).output)
        row["entries"] = {**streamed, "rate": size / streamed["seconds"]}
        scan_seconds, _ = baselines.sqlite_scan(db)
        row["raw_scan"] = {"seconds": scan_seconds, "rate": size / scan_seconds}
        if "rebuild" in available:
            rebuilt = cli(str(db), "--json", "rebuild")
            row["rebuild"] = rebuilt.summary(size)
        if size == largest:
            row.update(baselines_sqlite(work, db, source, size, available, args))
        remove_sqlite(db)
        out["sizes"][size] = row
        print(f"sqlite {size}: {json.dumps(row)}", flush=True)
    return out


def baselines_sqlite(
    work: Path, db: Path, source: Path, size: int, available: set[str], args: argparse.Namespace
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if args.skip_references:
        row.update(queries(str(db), size, available, source, work))
        return row
    events, entries = baselines.stored_rows(db)
    raw = work / "raw.db"
    seconds = baselines.sqlite_executemany(raw, events)
    row["raw_insert_events"] = {"seconds": seconds, "rate": size / seconds}
    seconds = baselines.sqlite_executemany(raw, events, entries)
    row["raw_insert_both"] = {"seconds": seconds, "rate": size / seconds}
    remove_sqlite(raw)
    del events, entries
    plain = work / "plain.db"
    seconds, count = baselines.plain_import(source, plain)
    row["plain_import"] = {"seconds": seconds, "rate": count / seconds}
    seconds, count = baselines.plain_replay(plain)
    row["plain_replay"] = {"seconds": seconds, "rate": count / seconds}
    remove_sqlite(plain)
    if args.before:
        old = work / "before.db"
        remove_sqlite(old)
        before = timed(
            [sys.executable, "-c", "import cli; cli.main()", "--store", str(old), "import", str(source)],
            env={"PYTHONPATH": str(args.before)},
            cwd=args.before,
        )
        row["import_before"] = before.summary(size)
        remove_sqlite(old)
    row.update(queries(str(db), size, available, source, work))
    return row


def queries(
    store: str, size: int, available: set[str], source: Path, work: Path, admin: str | None = None
) -> dict[str, Any]:
    """``verify``, ``status --as-of`` and ``endpoints --known-at`` on a full store; the read model's cases.

    The cases run on a second store of the same ``source``, imported in batches
    (:func:`readmodel.chunked`), so that their known-at moments see part of it.
    """
    import readmodel  # it imports this module's helpers

    row: dict[str, Any] = {}
    if "verify" in available:
        run = cli(store, "--json", "verify")
        row["verify"] = run.summary(size)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for name, extra in (("status", ["--as-of", AS_OF]), ("endpoints", ["--known-at", now])):
        if name in available:
            run = cli(store, "--json", name, *extra)
            row[name] = {"seconds": run.seconds, "peak_mb": run.peak_mb}
    batched = f"{admin}?schema=bench_batched" if admin else str(work / "batched.db")
    row["readmodel_reads"] = readmodel.reads(batched, readmodel.chunked(batched, source, admin, work))
    if admin:
        pg_drop(admin, "bench_batched")
    else:
        remove_sqlite(Path(batched))
    return row


# -- a small store and one append --------------------------------------------------------------


def bench_small(work: Path, available: set[str]) -> dict[str, Any]:
    """The demo-sized trial (120 participants): queries and one shell append, start-up included."""
    db = work / "small.db"
    remove_sqlite(db)
    source = work / "small.jsonl"
    write_jsonl(generate_trial(120, 2014), source)
    cli(str(db), "import", str(source))
    out: dict[str, Any] = {"events": sum(1 for _ in source.open("rb"))}
    for name, extra in (("status", ["--as-of", AS_OF]), ("endpoints", ["--known-at", _now()])):
        if name in available:
            runs = [cli(str(db), "--json", name, *extra).seconds for _ in range(5)]
            out[name] = {"median_seconds": statistics.median(runs), "runs": runs}
    fresh = work / "append.jsonl"
    fresh.write_text(json.dumps(SCREENING) + "\n")
    cli(str(db), "import", str(fresh))
    baseline, append = [], []
    for number in range(-1, APPEND_RUNS):  # run -1 warms the bytecode cache
        baseline.append(timed([sys.executable, "-c", "import eventsourcing, click, msgpack"]).seconds)
        effective = (dt.date(2014, 2, 4) + dt.timedelta(days=number)).isoformat()
        append.append(cli(str(db), *cmv_append("NFH-900", effective)).seconds)
    baseline, append = baseline[1:], append[1:]
    out["append"] = {
        "median_seconds": statistics.median(append),
        "baseline_median_seconds": statistics.median(baseline),
        "ratio": statistics.median(append) / statistics.median(baseline),
        "runs": append,
        "baseline_runs": baseline,
    }
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def bench_naive(work: Path, lines: int) -> dict[str, Any]:
    """``trial-ledger import`` of a generated trial against the naive raw path of the same lines."""
    source = write_trial(lines, work / f"trial-{lines}.jsonl")
    db = work / "naive-import.db"
    remove_sqlite(db)
    imported = cli(str(db), "import", str(source))
    remove_sqlite(db)
    seconds, count = baselines.naive_import(source, work / "naive-raw.db")
    return {
        "lines": count,
        "import": imported.summary(count),
        "raw": {"seconds": seconds, "rate": count / seconds},
    }


def bench_histories(work: Path, lengths: tuple[int, ...]) -> dict[str, Any]:
    """One append and one correction against the participant's history length (issue 14, goal 3)."""
    db = work / "history.db"
    remove_sqlite(db)
    figures = bench_history(str(db), work, cli, lengths)
    remove_sqlite(db)
    return figures


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_reachable(admin: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(admin, connect_timeout=3):
            return True
    except Exception:
        return False


def pg_drop(admin: str, schema: str) -> None:
    """Drop a bench schema and the group roles ``init`` made for it (``<schema>_<role>``)."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        groups = conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND NOT rolcanlogin", (f"{schema}_",)
        ).fetchall()
        for (name,) in groups:
            conn.execute(f'DROP ROLE "{name}"')


def bench_postgres(
    files: dict[int, Path], admin: str, available: set[str], skip_references: bool = False
) -> dict[str, Any]:
    import psycopg

    out: dict[str, Any] = {"sizes": {}}
    largest = max(files)
    for size, source in sorted(files.items()):
        schema = f"bench_{size}"
        pg_drop(admin, schema)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        store = f"{admin}?schema={schema}"
        row: dict[str, Any] = {}
        imported = cli(store, "import", str(source))
        row["import"] = imported.summary(size)
        streamed = json.loads(timed([sys.executable, str(HERE / "stream.py"), store]).output)
        row["entries"] = {**streamed, "rate": size / streamed["seconds"]}
        seconds, _ = baselines.pg_scan(admin, schema, "trialledger_events")
        row["raw_scan"] = {"seconds": seconds, "rate": size / seconds}
        if "rebuild" in available:
            rebuilt = cli(store, "--json", "rebuild")
            row["rebuild"] = rebuilt.summary(size)
        if size == largest:
            events, entries = baselines.pg_rows(admin, schema, "trialledger_events")
            copy_seconds = baselines.pg_copy(admin, "bench_baseline", events, entries)
            row["copy_both"] = {"seconds": copy_seconds, "rate": size / copy_seconds}
            if not skip_references:
                insert_seconds = baselines.pg_batched_insert(admin, "bench_baseline", events, entries)
                row["batched_insert_both"] = {"seconds": insert_seconds, "rate": size / insert_seconds}
            pg_drop(admin, "bench_baseline")
            del events, entries
            row.update(queries(store, size, available, source, source.parent, admin))
        pg_drop(admin, schema)
        out["sizes"][size] = row
        print(f"postgres {size}: {json.dumps(row)}", flush=True)
    return out


# -- report ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k events only (CI smoke run)")
    parser.add_argument("--sizes", type=int, nargs="+", help="store sizes to time (default: 100k, 300k, 1M)")
    parser.add_argument("--pg-sizes", type=int, nargs="+", help="PostgreSQL store sizes (default: --sizes)")
    parser.add_argument(
        "--skip-references",
        action="store_true",
        help="skip issue #7's reference baselines (raw executemany, library plain path, batched INSERT)",
    )
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL database for throwaway schemas")
    parser.add_argument("--work", type=Path, default=Path("/tmp/trial-ledger-bench"), help="scratch folder")
    parser.add_argument("--before", type=Path, help="an older source tree to time the import of, too")
    parser.add_argument(
        "--out",
        type=Path,
        help="where RESULTS.md and the plot go (default: bench/, or the scratch folder with --quick)",
    )
    parser.add_argument(
        "--readmodel", type=Path, help="the JSON written by bench/readmodel.py, to fold into the report"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="render RESULTS.md and the plot again from results.json"
    )
    args = parser.parse_args()
    args.out = args.out or (args.work if args.quick else HERE)
    if args.report_only:
        figures = json.loads((args.out / "results.json").read_text())
        if args.readmodel:
            figures["readmodel"] = json.loads(args.readmodel.read_text())
            (args.out / "results.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
        plot(figures, args.out / "scaling.png")
        (args.out / "RESULTS.md").write_text(render(figures))
        return
    sizes = tuple(args.sizes) if args.sizes else QUICK_SIZES if args.quick else FULL_SIZES
    args.work.mkdir(parents=True, exist_ok=True)
    largest = write_trial(max(sizes), args.work / f"trial-{max(sizes)}.jsonl")
    files = {size: prefix(largest, size, args.work / f"trial-{size}.jsonl") for size in sizes}
    available = commands()
    results = Results(
        quick=args.quick,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {__import__('sqlite3').sqlite_version}",
        started=_now(),
        command=" ".join(["python bench/run.py", *sys.argv[1:]]),
        sizes=list(sizes),
    )
    results.small = bench_small(args.work, available)
    print(f"small: {json.dumps(results.small)}", flush=True)
    results.history = bench_histories(args.work, (100, 300) if args.quick else HISTORY_LENGTHS)
    print(f"history: {json.dumps(results.history)}", flush=True)
    results.naive = bench_naive(args.work, min(NAIVE_LINES, max(sizes)))
    print(f"naive: {json.dumps(results.naive)}", flush=True)
    results.sqlite = bench_sqlite(args.work, files, available, args)
    if not args.no_pg and pg_reachable(args.pg):
        pg_files = {
            size: prefix(largest, size, args.work / f"trial-{size}.jsonl") for size in args.pg_sizes or sizes
        }
        results.postgres = bench_postgres(pg_files, args.pg, available, args.skip_references)
    elif not args.no_pg:
        results.notes.append(f"PostgreSQL not reachable at {args.pg}: skipped")
    if args.readmodel:
        results.readmodel = json.loads(args.readmodel.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results.__dict__, indent=2, default=str) + "\n")
    plot(results.__dict__, args.out / "scaling.png")
    (args.out / "RESULTS.md").write_text(render(results.__dict__))


if __name__ == "__main__":
    main()
