"""Concurrent writers on one store, and a writer that finds SQLite busy (issue #7, reliability).

Four OS processes, one per site, append 2,500 events each to the same store
(SQLite file, then a fresh PostgreSQL schema) in about fifty
:meth:`TrialLedger.record` calls of fifty lines and a few ``trial-ledger cmv``
commands, all released at the same moment so that their transactions really
interleave.  Afterwards exactly 10,000 events are stored, each id once, every
process's ids all there, positions 1..10,000 in order, every participant's
stream in the order it was written, and ``verify`` passes.

A writer that finds SQLite's write lock held (another connection inside
``BEGIN IMMEDIATE``) waits for it; when the lock outlasts
``TRIAL_LEDGER_BUSY_TIMEOUT`` it gives up with exit 3 and a clear message, and
nothing is stored.

``python -m tests.test_concurrency worker ...`` is the writer process itself
(see :func:`_worker`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from ledger.application.trial_ledger import Line, TrialLedger
from ledger.application.verification import verify
from ledger.domain.errors import Refused
from ledger.domain.events import decode_line
from ledger.storage.scan import snapshot
from tests import lines as L

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = str(Path(sys.executable).with_name("trial-ledger"))
SITES = ("NFH", "AMMS", "PKUPH", "SYSU")
PARTICIPANTS = 100  # per process
EVENTS_EACH = 25  # per participant: screening, enrollment, infusion, 22 CMV results
BATCH = 50
# (batch after which the worker runs ``trial-ledger cmv``, participant index whose last
# CMV result it enters): every line of that participant is in an earlier batch.
CLI_CALLS = ((10, 3), (25, 20), (40, 35))
TOTAL = len(SITES) * PARTICIPANTS * EVENTS_EACH


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout importable, no developer settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAL_LEDGER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


# -- the events each writer process appends -------------------------------------------------


def participant_lines(code: str) -> list[dict[str, Any]]:
    """25 valid lines of one participant, each with a client id, in the order they are written."""
    first = dt.date(2014, 1, 10)
    results = []
    for k in range(EVENTS_EACH - 3):
        kind = ("quantified", "below_lloq", "not_detected")[k % 3]
        effective = (first + dt.timedelta(days=2 * k)).isoformat()
        results.append(L.cmv(code, id=f"{code}-cmv-{k:02d}", effective=effective, result=kind))
    return [*L.treated(code), *results]


def site_plan(site: str) -> tuple[list[list[dict[str, Any]]], list[tuple[int, dict[str, Any]]]]:
    """A site's 2,500 lines as ``record`` batches of 50, and the lines entered by the CLI after batch n."""
    codes = [f"{site}-{n:03d}" for n in range(1, PARTICIPANTS + 1)]
    by_cli = [(after, participant_lines(codes[index])[-1]) for after, index in CLI_CALLS]
    held = {line["id"] for _, line in by_cli}
    flat = [line for code in codes for line in participant_lines(code) if line["id"] not in held]
    batches = [flat[i : i + BATCH] for i in range(0, len(flat), BATCH)]
    for after, line in by_cli:
        covered = {ln["participant"] for batch in batches[:after] for ln in batch}
        assert line["participant"] in covered and all(
            ln["participant"] != line["participant"] for batch in batches[after:] for ln in batch
        ), "the plan must enter a CLI line only after its participant's earlier lines"
    return batches, by_cli


def expected_ids(site: str) -> list[str]:
    return [line["id"] for n in range(1, PARTICIPANTS + 1) for line in participant_lines(f"{site}-{n:03d}")]


def cmv_command(line: dict[str, Any]) -> list[str]:
    """``trial-ledger cmv`` with the options of one CMV line."""
    args = ["cmv"]
    for name, value in line.items():
        if name != "type":
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _worker(store: str, site: str) -> None:
    """One writer process: open the ledger, say ready, wait for "go", append the site's lines.

    Prints one JSON object: the ids ``record`` and the CLI stored and skipped, and
    the CLI's exit codes.
    """
    user = f"{site.lower()}.writer"
    ledger = TrialLedger(store)
    batches, by_cli = site_plan(site)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")
    stored: list[str] = []
    skipped: list[str] = []
    codes: list[int] = []
    for number, batch in enumerate(batches, start=1):
        lines = [Line(n, decode_line(json.dumps(d))) for n, d in enumerate(batch, start=1)]
        receipt = ledger.record(lines, user=user)
        stored += receipt.stored
        skipped += receipt.skipped
        for after, line in by_cli:
            if after == number:
                done = subprocess.run(
                    [CONSOLE, "--store", store, "--user", user, "--json", *cmv_command(line)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env=subprocess_env(),
                )
                codes.append(done.returncode)
                if done.returncode == 0:
                    out = json.loads(done.stdout)
                    stored += out["stored"]
                    skipped += out["skipped"]
                else:
                    print(done.stderr, file=sys.stderr, flush=True)
    print(json.dumps({"stored": stored, "skipped": skipped, "cli": codes}), flush=True)


# -- the test side --------------------------------------------------------------------------


def run_writers(store: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Start one writer per site, release them together, and collect what each stored."""
    procs = {
        site: subprocess.Popen(
            [sys.executable, "-m", "tests.test_concurrency", "worker", "--store", store, "--site", site],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"{site}.err").open("w"),
            text=True,
            env=subprocess_env(),
            cwd=tmp_path,
        )
        for site in SITES
    }
    try:
        for site, proc in procs.items():
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert ready.strip() == "ready", (site, ready, (tmp_path / f"{site}.err").read_text())
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = {}
        for site, proc in procs.items():
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, (site, (tmp_path / f"{site}.err").read_text()[-3000:])
            results[site] = json.loads(out.strip().splitlines()[-1])
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check_ledger(store: str, results: dict[str, dict[str, Any]]) -> None:
    """Exactly the 10,000 events written, each once, in order, and a ledger that verifies."""
    for site, result in results.items():
        assert result["cli"] == [0] * len(CLI_CALLS), (site, result["cli"])
        assert result["skipped"] == []
        assert sorted(result["stored"]) == sorted(expected_ids(site)), site

    ledger = TrialLedger(store)
    assert ledger.recorder.max_notification_id() == TOTAL
    with snapshot(ledger) as snap:
        assert snap.event_count() == TOTAL
        assert snap.entry_count() == TOTAL
    entries = list(ledger.entries())
    positions = [e.position for e in entries]
    assert positions == list(range(1, TOTAL + 1)), "positions are 1..10,000, strictly increasing"
    ids = [e.record.id for e in entries]
    assert len(set(ids)) == TOTAL, "no event stored twice"
    site_of = {i: site for site in SITES for i in expected_ids(site)}
    assert set(ids) == set(site_of), "every process's ids, and nothing else"

    # Each participant's stream holds its 25 events in the order they were written.
    streams: dict[str, list[str]] = {}
    for e in entries:
        streams.setdefault(e.participant, []).append(e.record.id or "")
    assert len(streams) == len(SITES) * PARTICIPANTS
    for code, stream in streams.items():
        assert stream == [line["id"] for line in participant_lines(code)], code

    # The processes' writes interleaved (a serial run would switch writer only 3 times).
    writers = [site_of[i or ""] for i in ids]
    switches = sum(1 for a, b in pairwise(writers) if a != b)
    assert switches > len(SITES), f"writes did not interleave ({switches} switches)"

    verdict = verify(ledger)
    assert verdict.ok, verdict.first_bad
    assert verdict.size == TOTAL


def test_four_processes_append_10000_events_to_one_sqlite_file(sqlite_url: str, tmp_path: Path) -> None:
    results = run_writers(sqlite_url, tmp_path)
    check_ledger(sqlite_url, results)


def test_four_processes_append_10000_events_to_one_postgresql_schema(pg_url: str, tmp_path: Path) -> None:
    results = run_writers(pg_url, tmp_path)
    check_ledger(pg_url, results)


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-schema", "initialised-schema"])
def test_sites_opening_the_ledger_at_once_on_postgresql_do_not_crash(pg_url: str, fresh: bool) -> None:
    """Four processes open the ledger on one PostgreSQL schema at the same moment, five times.

    Regression: every ``TrialLedger(...)`` (so every command) runs the library's
    ``create_table`` (``CREATE TYPE``, ``CREATE TABLE IF NOT EXISTS``, ``CREATE OR
    REPLACE FUNCTION es_insert_events_text``); run by several processes at once it
    failed with "tuple concurrently updated" or a unique violation on ``pg_type``,
    a traceback and exit 1, about one start in four even on an initialised schema.
    """
    if not fresh:
        TrialLedger(pg_url)
    opener = f"from ledger.application.trial_ledger import TrialLedger; TrialLedger({pg_url!r})"
    failures = []
    for _ in range(5):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", opener], stderr=subprocess.PIPE, text=True, env=subprocess_env()
            )
            for _ in range(4)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                failures.append(err.strip().splitlines()[-1])
    assert failures == [], f"{len(failures)} of 20 concurrent starts failed: {failures[:3]}"


# -- a busy SQLite database -----------------------------------------------------------------


@contextlib.contextmanager
def write_lock_held(path: str) -> Iterator[sqlite3.Connection]:
    """Another connection holding SQLite's write lock (inside ``BEGIN IMMEDIATE``) until exit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def stored_state(store: str) -> list[tuple[int, str, bytes]]:
    with snapshot(TrialLedger(store)) as snap:
        return list(snap.events())


@pytest.fixture
def busy_store(sqlite_url: str) -> str:
    """A SQLite store with one treated participant."""
    TrialLedger(sqlite_url).record(L.as_lines(L.treated("NFH-001")), user="nfh.chen")
    return sqlite_url


def test_a_writer_waits_for_the_write_lock_and_succeeds_when_it_is_released(
    busy_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAL_LEDGER_BUSY_TIMEOUT", "20")
    ledger = TrialLedger(busy_store)  # opened before the lock is taken: only the append waits
    outcome: dict[str, Any] = {}

    def append() -> None:
        started = time.monotonic()
        try:
            outcome["stored"] = ledger.record(
                L.as_lines([L.cmv(id="NFH-001-cmv-late")]), user="nfh.chen"
            ).stored
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    hold = 1.5
    with write_lock_held(busy_store):
        writer = threading.Thread(target=append)
        writer.start()
        time.sleep(hold)
        assert writer.is_alive(), f"the append did not wait for the lock: {outcome}"
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["stored"] == ["NFH-001-cmv-late"]
    assert outcome["seconds"] >= hold
    assert verify(TrialLedger(busy_store)).ok


def test_a_command_waits_for_the_write_lock_released_within_the_timeout(busy_store: str) -> None:
    before = stored_state(busy_store)
    command = [CONSOLE, "--store", busy_store, "--user", "nfh.chen", "--json"]
    command += cmv_command(L.cmv(id="NFH-001-cmv-2"))
    env = subprocess_env(TRIAL_LEDGER_BUSY_TIMEOUT="30")
    hold = 3.0
    with write_lock_held(busy_store):
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(hold)
        assert proc.poll() is None, "the command finished while the database was locked"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= hold
    assert json.loads(out)["stored"] == ["NFH-001-cmv-2"]
    after = stored_state(busy_store)
    assert after[: len(before)] == before and len(after) == len(before) + 1
    assert verify(TrialLedger(busy_store)).ok


def test_a_command_gives_up_with_exit_3_when_the_lock_outlasts_the_timeout(busy_store: str) -> None:
    before = stored_state(busy_store)
    command = [CONSOLE, "--store", busy_store, "--user", "nfh.chen"]
    command += cmv_command(L.cmv(id="NFH-001-cmv-2"))
    with write_lock_held(busy_store):
        started = time.monotonic()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            env=subprocess_env(TRIAL_LEDGER_BUSY_TIMEOUT="1"),
        )
        seconds = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "database busy or locked" in done.stderr
    assert "Traceback" not in done.stderr
    assert 1.0 <= seconds < 30, "it waited for the 1 s timeout, not the 30 s default"
    assert stored_state(busy_store) == before
    verdict = verify(TrialLedger(busy_store))
    assert verdict.ok and verdict.size == len(before)


def test_an_append_gives_up_with_refused_when_the_lock_outlasts_the_timeout(
    busy_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAL_LEDGER_BUSY_TIMEOUT", "1")
    ledger = TrialLedger(busy_store)
    before = stored_state(busy_store)
    with write_lock_held(busy_store), pytest.raises(Refused, match="database busy or locked") as refused:
        ledger.record(L.as_lines([L.cmv(id="NFH-001-cmv-2")]), user="nfh.chen")
    assert refused.value.exit_code == 3
    assert stored_state(busy_store) == before
    assert verify(TrialLedger(busy_store)).ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--site", required=True)
    options = parser.parse_args()
    _worker(options.store, options.site)
