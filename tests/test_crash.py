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

A second test imports a whole simulated trial (about 28,000 lines) into an
empty store and kills it seven times: five times after a delay drawn from each
fifth of the time a clean import takes, and twice shortly after the process is
seen writing its batch (SQLite's write-ahead log growing, PostgreSQL's ``COPY``
in ``pg_stat_activity``), so that at least one kill lands inside the write
transaction.  After each kill the read model (``status --json``) answers too:
no participant, or exactly those of a clean import.  At the end the import run
again completes, and once more it adds nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.simulation.demo import generate_trial, write_jsonl
from ledger.storage.stores import is_postgres
from tests.integrity import sound_count

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


def _import(store: str, source: Path, scratch: Path | None = None) -> subprocess.Popen[bytes]:
    """An import process; ``scratch``: its temporary folder (where its staging file goes)."""
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
        env={**os.environ, "TMPDIR": str(scratch)} if scratch else None,
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


def test_a_killed_import_leaves_all_or_nothing_and_a_rerun_completes_it(
    store_url: str, trial: tuple[Path, Path], record_property: pytest.RecordProperty, tmp_path: Path
) -> None:
    base, source = trial
    rng = random.Random(2014)
    _fresh(store_url, base)
    before = sound_count(store_url)
    # How long a whole import takes here, to kill inside it.
    started = time.monotonic()
    complete = _import(store_url, source)
    assert complete.wait(timeout=900) == 0
    duration = time.monotonic() - started
    assert sound_count(store_url) == before + IMPORT_LINES
    outcomes = {"nothing": 0, "all": 0}
    for attempt in range(KILLS):
        _fresh(store_url, base)
        scratch = tmp_path / f"scratch-{attempt}"
        scratch.mkdir()
        importing = _import(store_url, source, scratch)
        # Half the kills late, where the batch is being written and committed.
        late = attempt % 2
        time.sleep(duration * rng.uniform(0.6 if late else 0.1, 1.0))
        importing.send_signal(signal.SIGKILL)
        importing.wait(timeout=60)
        assert list(scratch.iterdir()) == [], "the killed import left its staging file behind"
        count = sound_count(store_url)
        assert count in (before, before + IMPORT_LINES), (
            f"attempt {attempt}: {count - before} events of the import"
        )
        outcomes["nothing" if count == before else "all"] += 1
        if count == before:
            rerun = _import(store_url, source)
            assert rerun.wait(timeout=900) == 0, rerun.stderr.read() if rerun.stderr else ""
            assert sound_count(store_url) == before + IMPORT_LINES
    record_property("import_lines", IMPORT_LINES)
    record_property("kills", KILLS)
    record_property("kills_leaving_nothing", outcomes["nothing"])
    record_property("kills_after_commit", outcomes["all"])
    assert outcomes["nothing"] >= 1, "no kill landed inside an import: the timing above is off"


# -- a whole trial into an empty store, kills aimed at the write too -------------------------

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = str(Path(sys.executable).with_name("trial-ledger"))
WHOLE_PARTICIPANTS = 4_000 if LONG else 1_000  # about 110,000 or 28,000 lines
SPREAD_KILLS = 15 if LONG else 5
WRITE_KILLS = 2
WAL_WRITING = 256 * 1024  # bytes of write-ahead log that only the import's batch makes


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRIAL_LEDGER_", "PGAPPNAME"))}
    path = os.pathsep.join(filter(None, [str(ROOT), clean.get("PYTHONPATH")]))
    return {**clean, "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def whole_trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("crash") / "trial.jsonl"
    lines = generate_trial(WHOLE_PARTICIPANTS, seed=7)
    write_jsonl(lines, path)
    return path, len(lines)


def reset(store: str) -> None:
    """Make the store empty again (a new file, or the schema dropped and made anew)."""
    if is_postgres(store):
        import psycopg

        admin, _, schema = store.partition("?schema=")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(store + suffix).unlink(missing_ok=True)


def writing_probe(store: str, app: str) -> tuple[Callable[[], bool], Callable[[], None]]:
    """A check "is the importer writing its batch now?" and a function closing what it uses."""
    if is_postgres(store):
        import psycopg

        admin = store.partition("?schema=")[0]
        monitor = psycopg.connect(admin, autocommit=True)
        sql = (
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
            "AND state <> 'idle' AND query ILIKE 'COPY%%'"
        )
        return (lambda: monitor.execute(sql, (app,)).fetchone() is not None), monitor.close
    wal = Path(store + "-wal")

    def wal_growing() -> bool:
        try:
            return wal.stat().st_size > WAL_WRITING
        except FileNotFoundError:
            return False

    return wal_growing, lambda: None


@dataclass
class Run:
    seconds: float  # from start to exit (or to the kill)
    write_seen: float | None  # seconds from start to when the batch was seen being written
    killed: bool
    returncode: int


def run_import(
    store: str, source: Path, *, kill_after: float | None = None, kill_into_write: float | None = None
) -> Run:
    """``trial-ledger import`` in its own process, SIGKILLed ``kill_after`` seconds after its start,
    or ``kill_into_write`` seconds after it is seen writing (neither: let it finish)."""
    app = f"tl-crash-{uuid.uuid4().hex[:12]}"
    writing, close = writing_probe(store, app)
    started = time.monotonic()
    proc = subprocess.Popen(
        [CONSOLE, "--store", store, "--user", USER, "--json", "import", str(source)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(PGAPPNAME=app),
    )
    write_seen: float | None = None
    killed = False
    try:
        while proc.poll() is None:
            now = time.monotonic() - started
            if write_seen is None and writing():
                write_seen = now
            due = kill_after is not None and now >= kill_after
            due = due or (
                kill_into_write is not None and write_seen is not None and now >= write_seen + kill_into_write
            )
            if due:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            if now > 600:
                pytest.fail("the import did not finish in 10 minutes")
            time.sleep(0.002)
        returncode = proc.wait(timeout=60)
    finally:
        close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(time.monotonic() - started, write_seen, killed and returncode == -signal.SIGKILL, returncode)


def status(store: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [CONSOLE, "--store", store, "--json", "status"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)["participants"]  # type: ignore[no-any-return]


def import_json(store: str, source: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [CONSOLE, "--store", store, "--user", USER, "--json", "import", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_an_import_killed_at_any_moment_leaves_all_or_nothing_and_a_rerun_completes_it(
    store_url: str, whole_trial: tuple[Path, int]
) -> None:
    source, size = whole_trial
    rng = random.Random(2014)

    # A clean import: how long it takes here, when it starts writing, and its read model.
    reset(store_url)
    clean = run_import(store_url, source)
    assert clean.returncode == 0 and clean.write_seen is not None, clean
    assert sound_count(store_url) == size
    expected_status = status(store_url)
    assert len(expected_status) > WHOLE_PARTICIPANTS // 2
    write_window = clean.seconds - clean.write_seen

    delays: list[dict[str, float]] = [
        {"kill_after": clean.seconds * rng.uniform(i / SPREAD_KILLS, (i + 1) / SPREAD_KILLS)}
        for i in range(SPREAD_KILLS)
    ]
    delays += [
        {"kill_into_write": write_window * rng.uniform(i / (2 * WRITE_KILLS), (i + 1) / (2 * WRITE_KILLS))}
        for i in range(WRITE_KILLS)
    ]
    reset(store_url)
    outcomes = []
    for delay in delays:
        run = run_import(store_url, source, **delay)
        count = sound_count(store_url)
        assert count in (0, size), f"{delay}: {count} of {size} events stored"
        participants = status(store_url)
        if count == 0:
            assert run.killed, run
            assert participants == []
        else:
            assert participants == expected_status
            reset(store_url)  # the import completed before the kill: start the next one on an empty store
        outcomes.append((delay, run.killed, run.write_seen is not None, count))
    assert sum(killed for _, killed, _, _ in outcomes) >= SPREAD_KILLS, outcomes
    assert any(killed and seen and count == 0 for _, killed, seen, count in outcomes), (
        f"no kill landed inside the write transaction: {outcomes}"
    )

    # The same import again completes it; once more, it adds nothing.
    receipt = import_json(store_url, source)
    assert sound_count(store_url) == size
    assert len(receipt["stored"]) + len(receipt["skipped"]) == size
    assert status(store_url) == expected_status
    again = import_json(store_url, source)
    assert again["stored"] == [] and len(again["skipped"]) == size
    assert sound_count(store_url) == size
