"""Overlapping imports at once: both succeed, every line stored once (issue 11, item 9).

Two OS processes import the same files (same ids, same content: a pipeline's
retry running while the first attempt is still going), released at the same
moment, on a SQLite file and on a fresh PostgreSQL schema.  Each file is one
all-or-nothing batch, so each process meets many chances to read while the
other commits.  Before the fix, a process that read the ids before the other's
commit and the participants after it refused the file with exit 2 ("already
screened").  Now every import exits 0, each line is stored by exactly one
process and skipped by the other, and the ledger verifies.

``python -m tests.test_concurrent_imports worker ...`` is the importing process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.application.importer import import_lines
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify
from ledger.domain.errors import LedgerError
from tests import lines as L
from tests.test_concurrency import subprocess_env

FILES = 8
PARTICIPANTS = 60  # per file
JITTER = 0.1  # seconds, at most, before each import: the processes meet at every offset
ROUNDS = 3  # fresh stores per test: the race was seen in about one run in two


def import_files() -> list[str]:
    """``FILES`` import files of ``PARTICIPANTS`` new participants each, every line with an id."""
    files = []
    for number in range(FILES):
        codes = [f"NFH-{number * PARTICIPANTS + k + 1:03d}" for k in range(PARTICIPANTS)]
        lines = [line for code in codes for line in [*L.treated(code), L.cmv(code, id=f"{code}-cmv")]]
        files.append(L.jsonl(lines))
    return files


def _worker(store: str) -> None:
    """Open the ledger, say ready, wait for "go", import every file; print each one's outcome."""
    ledger = TrialLedger(store)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    outcomes: list[dict[str, Any]] = []
    for text in import_files():
        time.sleep(random.uniform(0, JITTER))
        try:
            receipt = import_lines(ledger, io.BytesIO(text.encode()), user="nfh.importer")
        except LedgerError as exc:
            outcomes.append({"exit": exc.exit_code, "error": str(exc)})
        else:
            outcomes.append({"exit": 0, "stored": receipt.stored, "skipped": receipt.skipped})
    print(json.dumps(outcomes), flush=True)


def run_importers(store: str, tmp_path: Path) -> list[list[dict[str, Any]]]:
    """Two importing processes released together; their outcomes per file."""
    TrialLedger(store)  # the tables exist before the race starts
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.test_concurrent_imports", "worker", "--store", store],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"importer{n}.err").open("w"),
            text=True,
            env=subprocess_env(),
            cwd=tmp_path,
        )
        for n in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for n, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, (tmp_path / f"importer{n}.err").read_text()[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check_imports(store: str, results: list[list[dict[str, Any]]]) -> None:
    files = import_files()
    expected = [json.loads(line)["id"] for text in files for line in text.splitlines()]
    for number, outcomes in enumerate(zip(*results, strict=True)):
        assert [o["exit"] for o in outcomes] == [0, 0], (number, outcomes)
        ids = [json.loads(line)["id"] for line in files[number].splitlines()]
        for outcome in outcomes:
            assert sorted(outcome["stored"] + outcome["skipped"]) == sorted(ids), (number, outcome)
        stored_by_both = [i for o in outcomes for i in o["stored"]]
        assert sorted(stored_by_both) == sorted(ids), f"file {number}: each line stored by one process"
    ledger = TrialLedger(store)
    stored = [entry.record.id for entry in ledger.entries()]
    assert sorted(stored) == sorted(expected), "every line stored exactly once"
    assert verify(ledger).ok


def test_overlapping_imports_at_once_on_sqlite(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        store = str(folder / "trial-ledger.db")
        check_imports(store, run_importers(store, folder))


def test_overlapping_imports_at_once_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        with _schema(pg_url, f"r{round_}") as store:
            check_imports(store, run_importers(store, folder))


@contextlib.contextmanager
def _schema(pg_url: str, suffix: str) -> Iterator[str]:
    """A fresh schema next to the fixture's, dropped afterwards."""
    import psycopg

    base, schema = pg_url.split("?schema=")
    name = f"{schema}_{suffix}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{base}?schema={name}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--store", required=True)
    options = parser.parse_args()
    _worker(options.store)
