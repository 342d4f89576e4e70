"""Reads never write (issue 12 item 4): every read command runs where nothing can be written.

On SQLite the read commands run on the store opened read-only (an SQLite
``file:...?mode=ro`` URI) and give the same output as on the plain path; on
PostgreSQL they run for a fresh login that holds SELECT and nothing else.  And
after every read command, on the plain store as its owner, the database is
unchanged: the SQLite file's bytes, nothing in its write-ahead log, every
PostgreSQL table's rows.  The same holds on a store an earlier version wrote,
whose read model lags the ledger (the reads compute the rest in memory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from cli import main

CONSOLE = str(Path(sys.executable).with_name("trial-ledger"))
KNOWN_AT = "2030-01-01T00:00:00Z"
AS_OF = "2015-06-30"
FIXTURE = Path(__file__).parent / "fixtures" / "v0.1.0" / "store.db"
# When an export was made: the one output that is the clock's, not the ledger's.
CREATED = re.compile(r'"created": "[^"]*"')


def read_commands(out: Path, event_id: str) -> list[list[str]]:
    """Every read command, with fixed times so that two runs can be compared."""
    times = ["--as-of", AS_OF, "--known-at", KNOWN_AT]
    return [
        ["status", *times],
        ["status", "NFH-001", *times],
        ["endpoints", *times],
        ["audit"],
        ["audit", "NFH-001", "--until", KNOWN_AT],
        ["verify"],
        ["digest"],
        ["prove", event_id],
        ["export", "odm", str(out / "odm.xml"), "--known-at", KNOWN_AT],
        ["export", "sdtm", str(out / "sdtm"), "--format", "csv", *times],
        ["report", "--out", str(out / "report"), *times],
        ["signatures", "--known-at", KNOWN_AT],
        ["protocol", "show", "--known-at", KNOWN_AT],
        ["coding", "--known-at", KNOWN_AT],
    ]


# Without the capabilities that let root write anywhere: file modes then bind this process too.
CONFINED = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all"] if os.geteuid() == 0 else []


def run(store: str, *args: str, confined: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(CONFINED if confined else []), CONSOLE, "--store", store, "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def outputs(store: str, out: Path, event_id: str, confined: bool = False) -> list[tuple[int, str, str]]:
    """Each read command's exit code, output and error, the files it wrote made anew each time."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    found = []
    for command in read_commands(out, event_id):
        done = run(store, *command, confined=confined)
        found.append((done.returncode, CREATED.sub('"created": "(now)"', done.stdout), done.stderr))
    return found


def first_event_id(store: str) -> str:
    done = run(store, "audit")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["entries"][0]["event_id"])


def sqlite_state(path: Path) -> tuple[str, int]:
    """The database file's bytes (hashed) and the size of its write-ahead log, where a write would go."""
    wal = path.with_name(path.name + "-wal")
    return hashlib.sha256(path.read_bytes()).hexdigest(), wal.stat().st_size if wal.exists() else 0


def demo_store(store: str) -> None:
    done = subprocess.run(
        [CONSOLE, "--store", store, "--user", "dm", "demo", "--participants", "24"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("source", ["demo", "v0.1.0"])
def test_sqlite_reads_run_read_only_with_the_same_output(tmp_path: Path, source: str) -> None:
    path = tmp_path / "store.db"
    if source == "demo":
        demo_store(str(path))
    else:
        shutil.copy(FIXTURE, path)  # its read model lags: tracked elsewhere by an earlier version
    event_id = first_event_id(str(path))
    plain = outputs(str(path), tmp_path / "out", event_id)
    assert [code for code, _, _ in plain] == [0] * len(plain), [err for _, _, err in plain]
    before = sqlite_state(path)
    read_only = outputs(f"file:{path}?mode=ro", tmp_path / "out", event_id)
    assert read_only == plain
    for command in read_commands(tmp_path / "out", event_id):
        shutil.rmtree(tmp_path / "out")
        (tmp_path / "out").mkdir()
        done = run(str(path), *command)
        assert done.returncode == 0, (command, done.stderr)
        assert sqlite_state(path) == before, f"{command} changed the database"


def test_sqlite_reads_run_in_a_folder_nobody_may_write_with_the_same_output(tmp_path: Path) -> None:
    """An archived copy on read-only media: SQLite could not make its log's files there."""
    folder = tmp_path / "archive"
    folder.mkdir()
    path = folder / "store.db"
    demo_store(str(path))
    event_id = first_event_id(str(path))
    plain = outputs(str(path), tmp_path / "out", event_id)
    assert not path.with_name("store.db-wal").exists()  # the last writer checkpointed it
    before = sqlite_state(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        assert outputs(str(path), tmp_path / "out", event_id, confined=True) == plain
        done = run(str(path), "--user", "dm", "lock", "--reason", "interim analysis", confined=True)
        assert (done.returncode, done.stderr.splitlines()[-1]) == (
            3,
            "error: the store is read-only, nothing stored: attempt to write a readonly database",
        )
        assert sorted(p.name for p in folder.iterdir()) == ["store.db"]
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert sqlite_state(path) == before


@pytest.fixture
def reader(pg_url: str) -> Iterator[tuple[str, str]]:
    """The owner's store URL and the same store for a fresh login that may only SELECT."""
    import psycopg

    demo_store(pg_url)
    url = urlsplit(pg_url)
    schema = parse_qs(url.query)["schema"][0]
    role = f"tl_reader_{uuid.uuid4().hex[:10]}"
    admin = url._replace(query="").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    try:
        yield pg_url, pg_url.replace("postgres@", f"{role}@", 1)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def postgres_state(store: str) -> dict[str, tuple[int, str]]:
    """Every table of the store's schema: its row count and a hash of its rows."""
    import psycopg

    url = urlsplit(store)
    schema = parse_qs(url.query)["schema"][0]
    with psycopg.connect(url._replace(query="").geturl()) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
            )
        ]
        state = {}
        for table in tables:
            row = conn.execute(
                f"SELECT COUNT(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f'FROM "{schema}"."{table}" t'
            ).fetchone()
            assert row is not None
            state[table] = (int(row[0]), str(row[1]))
    return state


def test_postgres_reads_run_for_a_select_only_login_with_the_same_output(
    reader: tuple[str, str], tmp_path: Path
) -> None:
    owner, select_only = reader
    event_id = first_event_id(owner)
    mine = outputs(owner, tmp_path / "out", event_id)
    assert [code for code, _, _ in mine] == [0] * len(mine), [err for _, _, err in mine]
    before = postgres_state(owner)
    theirs = outputs(select_only, tmp_path / "out", event_id)
    assert theirs == mine
    for command in read_commands(tmp_path / "out", event_id):
        shutil.rmtree(tmp_path / "out")
        (tmp_path / "out").mkdir()
        done = run(owner, *command)
        assert done.returncode == 0, (command, done.stderr)
        assert postgres_state(owner) == before, f"{command} changed the database"


def test_a_write_on_a_read_only_sqlite_store_is_refused_as_read_only(tmp_path: Path) -> None:
    """Exit 3 saying so, not "busy or locked", and the file is unchanged."""
    path = tmp_path / "store.db"
    runner = CliRunner()
    assert runner.invoke(main, ["--store", str(path), "init"]).exit_code == 0
    before = sqlite_state(path)
    for command in (
        ["lock", "--reason", "interim analysis"],
        ["user", "add", "dm", "--role", "data_manager", "--full-name", "Dana Lee"],
    ):
        result = runner.invoke(main, ["--store", f"file:{path}?mode=ro", "--user", "dm", *command])
        assert (result.exit_code, result.stderr) == (
            3,
            "error: the store is read-only, nothing stored: attempt to write a readonly database\n",
        )
    assert sqlite_state(path) == before
