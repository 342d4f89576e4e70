"""Real logins on a secured PostgreSQL ledger (issue 12): one person of each role, as PostgreSQL knows them.

``init`` by the schema's owner makes the groups, grants and policies; ``user
add`` makes the login roles; then every login connects as itself.  Roles are
cluster-wide: every login carries a random tag and is dropped afterwards, with
the schema's groups (:func:`tests.conftest.drop_roles`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from click.testing import CliRunner
from psycopg import sql

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.events import Record
from tests.conftest import PG_ADMIN_URL, drop_roles

PEOPLE = {
    "dm": ("data_manager", None),
    "nurse": ("site_staff", "NFH"),
    "pi": ("investigator", "AMMS"),
    "monitor": ("monitor", None),
    "auditor": ("auditor", None),
    "coder": ("coder", None),
}


def as_login(url: str, name: str) -> str:
    """``url`` with ``name`` as its user (trust authentication on the test server)."""
    return url.replace("postgresql://postgres@", f"postgresql://{quote(name, safe='')}@", 1)


class Site:
    """A secured ledger: its URL, schema and the login of each person."""

    def __init__(self, url: str, tag: str) -> None:
        self.url, self.tag = url, tag
        self.schema = url.rsplit("schema=", 1)[1]
        self.logins = {person: f"{tag}.{person}" for person in PEOPLE}

    def ledger(self, person: str) -> TrialLedger:
        return TrialLedger(as_login(self.url, self.logins[person]))

    def connect(self, person: str) -> psycopg.Connection:
        conn = psycopg.connect(as_login(PG_ADMIN_URL, self.logins[person]), autocommit=True)
        conn.execute(sql.SQL("SET search_path = {0}").format(sql.Identifier(self.schema)))
        return conn


def register(ledger: TrialLedger, name: str, role: str, site: str | None = None) -> None:
    """``user add`` by the ledger's own login (keys are each user's own business: ``key new``)."""
    full_name = name.replace(".", " ").title()
    access.register(ledger, None, name=name, full_name=full_name, role=role, user_site=site)


@contextmanager
def secured_site(pg_url: str) -> Iterator[Site]:
    """A ledger on ``pg_url`` after ``init``, with one login of each role; the logins dropped afterwards."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    place = Site(pg_url, tag)
    try:
        result = CliRunner().invoke(main, ["--store", pg_url, "init"])
        assert result.exit_code == 0, result.output
        owner = TrialLedger(pg_url)  # the bootstrap: the owner registers the first data manager
        register(owner, place.logins["dm"], "data_manager")
        dm = place.ledger("dm")
        for person, (role, where) in PEOPLE.items():
            if person != "dm":
                register(dm, place.logins[person], role, where)
        yield place
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE starts_with(usename, %s)",
                (tag,),
            )
            drop_roles(conn, tag)


def sqlstate(conn: psycopg.Connection, statement: str | sql.Composable, *params: object) -> str | None:
    """The SQLSTATE ``statement`` fails with (None: it succeeded)."""
    try:
        conn.execute(statement, params or None)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


DENIED = "42501"  # insufficient_privilege: "permission denied" and row-level security refusals alike


def stored_row(ledger: TrialLedger, log: type[access.RecordLog], record: Record) -> tuple[int, str, bytes]:
    """(version, topic, state) of ``record`` as the ledger would store it next in ``log``'s stream."""
    stream = log.append(log.load(ledger), record, ledger.clock())
    [event] = stream.collect_events()
    row = ledger.mapper.to_stored_event(event)
    return row.originator_version, row.topic, row.state
