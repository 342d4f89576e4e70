"""Shared fixtures: a throwaway store of each kind.

``store_url`` is parametrised over SQLite and PostgreSQL, so a test that takes
it runs against both.  PostgreSQL tests use a fresh schema per test, dropped
afterwards; when ``CI=true`` a missing PostgreSQL fails the run instead of
skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from ledger.domain.protocol import DEFAULT_PROTOCOL, Protocol, load_protocol

# Machines here are small and noisy: no per-example deadline; CI prints the
# failing example's reproduction blob.
settings.register_profile("ledger", deadline=None, print_blob=True)
settings.load_profile("ledger")

PG_ADMIN_URL = os.environ.get("TRIAL_LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_ready() -> bool:
    available = _pg_available()
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; CI requires it")
        pytest.skip("PostgreSQL not reachable (set CI=true to make this a failure)")
    return available


@pytest.fixture
def pg_url(pg_ready: bool) -> Iterator[str]:
    """A store URL on a fresh PostgreSQL schema, dropped after the test."""
    import psycopg

    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_ADMIN_URL}?schema={schema}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            # The groups ``init`` made for this schema (ledger.storage.grants): roles are cluster-wide.
            drop_roles(conn, f"{schema}_")


def drop_roles(conn: Any, prefix: str) -> None:
    """Drop every role whose name starts with ``prefix``, with what it owns or was granted here."""
    rows = conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)).fetchall()
    for (name,) in rows:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "trial-ledger.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on the embedded SQLite store and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own store, user or protocol settings."""
    for name in ("TRIAL_LEDGER_STORE", "TRIAL_LEDGER_USER", "TRIAL_LEDGER_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


PROTOCOL_FILES = {
    "NFH-MSC-CMV-2014": DEFAULT_PROTOCOL,
    "second": Path(__file__).parent / "protocols" / "second.toml",
}


@pytest.fixture(params=list(PROTOCOL_FILES))
def protocol(request: pytest.FixtureRequest) -> Protocol:
    """The shipped protocol and a second one with other values for every rule parameter (issue 13)."""
    return load_protocol(PROTOCOL_FILES[request.param])


@pytest.fixture
def site(pg_url: str) -> Iterator[Any]:
    """A secured PostgreSQL ledger with a real login of each role (:class:`tests.logins.Site`)."""
    from tests.logins import secured_site

    with secured_site(pg_url) as place:
        yield place
