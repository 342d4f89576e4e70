"""An import killed at any moment leaves all of it or nothing, and a re-run completes it (SPEC sections 5-6).

A store holds the start of a simulated trial; the next lines of the same trial
are imported by a real ``trial-ledger import`` process that is killed with
SIGKILL at a random moment, again and again.  After every kill the store holds
either nothing of that import or all of it, ``verify`` recomputes the chain and
the Merkle tree without a mismatch, and the events and the ledger entries agree
position by position.  Finally the same import, run again, completes.  Both
stores: SQLite's write-ahead log and PostgreSQL's transaction must each throw
away a killed writer's half-written batch.

``TRIAL_LEDGER_LONG=1`` (``bench/reliability.py``) kills a 100,000-line import
20 times; the default is a few kills of a smaller file, for CI.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.application import TrialLedger
from ledger.demo import generate_trial, write_jsonl
from ledger.scan import snapshot
from ledger.verification import verify

LONG = os.environ.get("TRIAL_LEDGER_LONG") == "1"
BASE_LINES = 2_000
IMPORT_LINES = 100_000 if LONG else 8_000
KILLS = 20 if LONG else 3
USER = "nfh.chen"


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first lines of a simulated trial (the store's content) and the lines after them (the import)."""
    folder = tmp_path_factory.mktemp("crash")
    lines = generate_trial(max(130, (BASE_LINES + IMPORT_LINES) // 25), 7)
    assert len(lines) >= BASE_LINES + IMPORT_LINES
    base, rest = folder / "base.jsonl", folder / "import.jsonl"
    write_jsonl(lines[:BASE_LINES], base)
    write_jsonl(lines[BASE_LINES : BASE_LINES + IMPORT_LINES], rest)
    return base, rest


def _import(store: str, source: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import cli; cli.main()",
            "--store",
            store,
            "--user",
            USER,
            "--json",
            "import",
            str(source),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _fresh(store_url: str, base: Path) -> None:
    """The store with the base lines only (a previous attempt may have completed)."""
    if store_url.startswith("postgresql://"):
        import psycopg

        admin, _, schema = store_url.partition("?schema=")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store_url}{suffix}").unlink(missing_ok=True)
    done = _import(store_url, base)
    assert done.wait(timeout=300) == 0, done.stderr.read() if done.stderr else ""


def _sound(store_url: str) -> int:
    """The number of stored events, after checking that the seal covers exactly them."""
    ledger = TrialLedger(store_url)
    try:
        with snapshot(ledger) as snap:
            events, entries = snap.event_count(), snap.entry_count()
        verdict = verify(ledger)
        assert verdict.ok, verdict.to_json()
        assert events == entries == verdict.size
        return events
    finally:
        ledger.close()


def test_a_killed_import_leaves_all_or_nothing_and_a_rerun_completes_it(
    store_url: str, trial: tuple[Path, Path], record_property: pytest.RecordProperty
) -> None:
    base, source = trial
    rng = random.Random(2014)
    _fresh(store_url, base)
    before = _sound(store_url)
    # How long a whole import takes here, to kill inside it.
    started = time.monotonic()
    complete = _import(store_url, source)
    assert complete.wait(timeout=900) == 0
    duration = time.monotonic() - started
    assert _sound(store_url) == before + IMPORT_LINES
    outcomes = {"nothing": 0, "all": 0}
    for attempt in range(KILLS):
        _fresh(store_url, base)
        importing = _import(store_url, source)
        # Half the kills late, where the batch is being written and committed.
        late = attempt % 2
        time.sleep(duration * rng.uniform(0.6 if late else 0.1, 1.0))
        importing.send_signal(signal.SIGKILL)
        importing.wait(timeout=60)
        count = _sound(store_url)
        assert count in (before, before + IMPORT_LINES), (
            f"attempt {attempt}: {count - before} events of the import"
        )
        outcomes["nothing" if count == before else "all"] += 1
        if count == before:
            rerun = _import(store_url, source)
            assert rerun.wait(timeout=900) == 0, rerun.stderr.read() if rerun.stderr else ""
            assert _sound(store_url) == before + IMPORT_LINES
    record_property("import_lines", IMPORT_LINES)
    record_property("kills", KILLS)
    record_property("kills_leaving_nothing", outcomes["nothing"])
    record_property("kills_after_commit", outcomes["all"])
    assert outcomes["nothing"] >= 1, "no kill landed inside an import: the timing above is off"
