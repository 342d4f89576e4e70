"""PostgreSQL faults: a connection terminated under an import, and a table lock held by another writer.

An import runs as a real ``trial-ledger import`` process whose connections are
labelled with ``PGAPPNAME``, so that a monitor connection finds exactly its
backends in ``pg_stat_activity`` and terminates them with
``pg_terminate_backend`` (what an administrator, a failover or a network cut
does).  Whatever happens, the import is stored whole or not at all, ``verify``
passes, the read model answers, the command never ends in a traceback, and
running the import again completes it; a further run adds nothing.

A writer that finds the events table locked by another transaction (an import
being written) waits up to ``TRIAL_LEDGER_BUSY_TIMEOUT`` seconds and then exits
3 with a clear message; readers are not blocked by it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from ledger.application.trial_ledger import TrialLedger
from ledger.simulation.demo import generate_trial, write_jsonl
from ledger.storage.scan import snapshot
from tests import lines as L
from tests.integrity import sound_count

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = str(Path(sys.executable).with_name("trial-ledger"))
ADMIN_URL = os.environ.get("TRIAL_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
USER = "nfh.chen"
BASE_LINES = 2_000  # already in the store before the import
PARTICIPANTS = 1_000  # about 28,000 lines: the write takes a few tenths of a second
# The importer's backend inside its write transaction: taking the table lock or streaming rows.
IN_WRITE = "(query ILIKE 'LOCK TABLE%%' OR query ILIKE 'COPY%%')"


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRIAL_LEDGER_", "PGAPPNAME"))}
    return {
        **clean,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), clean.get("PYTHONPATH")])),
        **extra,
    }


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """The store's first lines, the import (the lines after them) and the import's length."""
    folder = tmp_path_factory.mktemp("pg-faults")
    lines = generate_trial(PARTICIPANTS, seed=2014)
    base, rest = folder / "base.jsonl", folder / "import.jsonl"
    write_jsonl(lines[:BASE_LINES], base)
    write_jsonl(lines[BASE_LINES:], rest)
    return base, rest, len(lines) - BASE_LINES


# This run's importers only: other runs on the same server are left alone.
APP_PREFIX = f"tl-fault-{uuid.uuid4().hex[:6]}-"


@contextmanager
def schema_store() -> Iterator[str]:
    """A store URL on a new PostgreSQL schema, dropped afterwards."""
    schema = f"tl_fault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{ADMIN_URL}?schema={schema}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
                (APP_PREFIX + "%",),
            )
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def cli(store: str, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSOLE, "--store", store, "--user", USER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra),
    )


def imported(store: str, source: Path) -> dict[str, list[str]]:
    """Run the import to the end without faults; its receipt."""
    done = cli(store, "--json", "import", str(source))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def status_participants(store: str) -> int:
    """How many participants the read model lists (``status --json``)."""
    done = cli(store, "--json", "status", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return len(json.loads(done.stdout)["participants"])


@dataclass
class Faulted:
    """An import run under a fault: its exit code, stderr and the backends terminated."""

    returncode: int
    stderr: str
    terminated: list[str] = field(default_factory=list)


def import_under_fault(
    store: str, source: Path, *, every: bool = False, after: float | None = None
) -> Faulted:
    """Import ``source`` while terminating the importer's backends.

    With ``after``, every backend of the importer once, that many seconds after
    the start (whatever it is doing); else the first backend seen inside the
    write transaction (``every``: each one seen there, until the import ends).
    """
    app = f"{APP_PREFIX}{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    proc = subprocess.Popen(
        [CONSOLE, "--store", store, "--user", USER, "--json", "import", str(source)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(PGAPPNAME=app),
    )
    terminated: list[str] = []
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True) as monitor:
            while proc.poll() is None and time.monotonic() - started < 300:
                if after is not None:
                    if not terminated and time.monotonic() - started >= after:
                        rows = monitor.execute(
                            "SELECT pg_terminate_backend(pid), state || ': ' || left(query, 40) "
                            "FROM pg_stat_activity WHERE application_name = %s",
                            (app,),
                        ).fetchall()
                        terminated += [what or "" for _, what in rows] or ["(no backend yet)"]
                elif every or not terminated:
                    rows = monitor.execute(
                        "SELECT pg_terminate_backend(pid), left(query, 40) FROM pg_stat_activity "
                        f"WHERE application_name = %s AND state <> 'idle' AND {IN_WRITE}",
                        (app,),
                    ).fetchall()
                    terminated += [what for _, what in rows]
                time.sleep(0.002)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Faulted(proc.returncode, err, terminated)


def assert_clean_failure(run: Faulted) -> None:
    """A refused import: exit 3 with a message, never a traceback (exit 1 means tampering)."""
    assert run.returncode == 3, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: "), run.stderr[-2000:]


def rerun_completes(store: str, source: Path, base: int, size: int) -> None:
    """The import run again stores what is missing; once more, it adds nothing."""
    receipt = imported(store, source)
    assert sound_count(store) == base + size
    assert len(receipt["stored"]) + len(receipt["skipped"]) == size
    again = imported(store, source)
    assert again["stored"] == [] and len(again["skipped"]) == size
    assert sound_count(store) == base + size


@pytest.mark.usefixtures("pg_ready")
def test_a_connection_terminated_mid_write_is_retried_or_refused_never_half_stored(
    trial: tuple[Path, Path, int],
) -> None:
    base_file, source, size = trial
    with schema_store() as store:
        imported(store, base_file)
        base = sound_count(store)
        run = import_under_fault(store, source)
        assert run.terminated, "the monitor never saw the import's write transaction"
        count = sound_count(store)
        if run.returncode == 0:  # the product retried on a new connection
            assert count == base + size
        else:
            assert_clean_failure(run)
            assert count == base
        assert status_participants(store) > 0
        rerun_completes(store, source, base, size)


@pytest.mark.usefixtures("pg_ready")
def test_connections_terminated_on_every_attempt_refuse_the_import_and_store_nothing(
    trial: tuple[Path, Path, int],
) -> None:
    base_file, source, size = trial
    with schema_store() as store:
        imported(store, base_file)
        base = sound_count(store)
        participants = status_participants(store)
        run = import_under_fault(store, source, every=True)
        assert run.terminated
        assert_clean_failure(run)
        assert sound_count(store) == base, "nothing of a refused import is stored"
        assert status_participants(store) == participants
        rerun_completes(store, source, base, size)
        assert status_participants(store) > participants


@pytest.mark.usefixtures("pg_ready")
def test_connections_terminated_at_random_moments_leave_all_or_nothing(
    trial: tuple[Path, Path, int],
) -> None:
    """Three imports, each cut once at a random moment of its run (reading, checking or writing)."""
    base_file, source, size = trial
    rng = random.Random(7)
    with schema_store() as reference:
        imported(reference, base_file)
        started = time.monotonic()
        imported(reference, source)
        duration = time.monotonic() - started
    outcomes = []
    for round_ in range(3):
        with schema_store() as store:
            imported(store, base_file)
            base = sound_count(store)
            low, high = round_ / 3, (round_ + 1) / 3  # spread over the run
            run = import_under_fault(store, source, after=duration * rng.uniform(low, high))
            count = sound_count(store)
            assert count in (base, base + size), f"{count - base} of {size} events stored"
            if count == base:
                assert_clean_failure(run)
            else:
                assert run.returncode == 0, run.stderr[-2000:]
            outcomes.append((run.returncode, run.terminated))
            rerun_completes(store, source, base, size)
    assert any(terminated != ["(no backend yet)"] for _, terminated in outcomes), outcomes


# -- a table locked by another writer --------------------------------------------------------


@contextmanager
def table_locked(store: str) -> Iterator[None]:
    """Another transaction holding the events table lock, as a writer does while it writes."""
    schema = store.partition("?schema=")[2]
    with psycopg.connect(ADMIN_URL) as holder:
        holder.execute(f'LOCK TABLE "{schema}".trialledger_events IN EXCLUSIVE MODE')
        try:
            yield
        finally:
            holder.rollback()


@pytest.fixture
def treated_store(pg_url: str) -> str:
    TrialLedger(pg_url).record(L.as_lines(L.treated("NFH-001")), user=USER)
    return pg_url


def cmv_args(event_id: str) -> list[str]:
    line = L.cmv("NFH-001", id=event_id, effective="2014-01-20", result="not_detected")
    return [
        "cmv",
        *(
            arg
            for name, value in line.items()
            if name != "type"
            for arg in (f"--{name.replace('_', '-')}", str(value))
        ),
    ]


def stored(store: str) -> list[tuple[int, str, bytes]]:
    ledger = TrialLedger(store)
    try:
        with snapshot(ledger) as snap:
            return list(snap.events())
    finally:
        ledger.close()


def test_a_write_behind_a_held_table_lock_gives_up_with_exit_3_after_the_timeout(treated_store: str) -> None:
    before = stored(treated_store)
    with table_locked(treated_store):
        started = time.monotonic()
        try:
            done = cli(
                treated_store, *cmv_args("NFH-001-cmv-busy"), timeout=30, TRIAL_LEDGER_BUSY_TIMEOUT="1"
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the command hung behind the table lock instead of giving up after 1 s")
        seconds = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "busy or locked" in done.stderr and "Traceback" not in done.stderr
    assert seconds >= 1.0
    assert stored(treated_store) == before
    assert sound_count(treated_store) == len(before)


def test_a_write_waits_for_a_table_lock_released_within_the_timeout(treated_store: str) -> None:
    hold = 2.0
    with table_locked(treated_store):
        started = time.monotonic()
        proc = subprocess.Popen(
            [CONSOLE, "--store", treated_store, "--user", USER, "--json", *cmv_args("NFH-001-cmv-late")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(TRIAL_LEDGER_BUSY_TIMEOUT="30"),
        )
        time.sleep(hold)
        assert proc.poll() is None, "the write did not wait for the table lock"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= hold
    assert json.loads(out)["stored"] == ["NFH-001-cmv-late"]
    assert sound_count(treated_store) == 4


@pytest.mark.parametrize("command", [["verify"], ["status"], ["audit", "NFH-001"]])
def test_reads_are_not_blocked_by_a_writers_table_lock(treated_store: str, command: list[str]) -> None:
    with table_locked(treated_store):
        try:
            done = cli(treated_store, "--json", *command, timeout=30, TRIAL_LEDGER_BUSY_TIMEOUT="30")
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(command)}` hung behind a writer's table lock")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
