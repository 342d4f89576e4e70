"""A SELECT-only login's refused attempt is on record too (issue 12, item 7), sealed by the database.

Monitors and auditors may only ``SELECT``: the owner's ``SECURITY DEFINER``
function (:mod:`ledger.storage.refusal_seal`) seals the record of their refused
attempt, under their own login, and nothing else: not another record, not
another stream, not someone else's refusal.  With real logins (``site``:
:mod:`tests.logins`); and the function's MessagePack encoders and Merkle
frontier are compared with the Python ones that the rest of the ledger uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import msgspec
import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg import sql

from cli import main
from ledger.application import access
from ledger.domain.events import ActionRefused, DatabaseLocked
from ledger.evidence.merkle import Frontier, leaf_hash
from ledger.storage import refusal_seal
from ledger.storage.seal import canonical_entry
from ledger.storage.summaries import micros
from projections.readmodel.queries import Monitor
from tests.conftest import PG_ADMIN_URL
from tests.logins import DENIED, Site, as_login, sqlstate, stored_row

SCREEN = [
    *("screen", "--participant", "NFH-001", "--site", "NFH", "--effective", "2014-01-06"),
    *("--age-years", "42", "--sex", "F", "--refractory-cmv", "infection"),
    *("--consent-date", "2014-01-05", "--consent-by", "participant"),
    *("--hr", "78", "--rr", "16", "--sbp", "118", "--dbp", "76"),
]
ATTEMPTS = [
    (["lock", "--reason", "interim analysis"], "lock", "(monitor) may not lock the ledger"),
    (SCREEN, "append ParticipantScreened", "(monitor) may not append clinical data"),
    (
        ["user", "add", "x.newcomer", "--role", "monitor", "--full-name", "X Newcomer"],
        "user add",
        "(monitor) may not register users",
    ),
]
UNCHANGED = "SELECT count(*), max(notification_id) FROM trialledger_events"


def cli(site: Site, person: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--store", as_login(site.url, site.logins[person]), *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_monitors_refused_attempts_are_recorded_under_its_login_and_show_in_audit(site: Site) -> None:
    monitor = site.logins["monitor"]
    for args, _, why in ATTEMPTS:
        code, _, err = cli(site, "monitor", *args)
        assert (code, err) == (3, f"error: {monitor} {why}\n")
    # During a lock too: the lock blocks clinical appends, not the record of a refusal.
    assert cli(site, "dm", "lock", "--reason", "database lock")[0] == 0
    code, _, err = cli(site, "auditor", "unlock", "--reason", "let me in")
    assert (code, err) == (3, f"error: {site.logins['auditor']} (auditor) may not unlock the ledger\n")
    code, out, _ = cli(site, "auditor", "--json", "audit")
    assert code == 0
    rows = [row for row in json.loads(out)["entries"] if row["type"] == "ActionRefused"]
    expected = [(monitor, action, f"refused {action}: {monitor} {why}") for _, action, why in ATTEMPTS]
    expected.append(
        (
            site.logins["auditor"],
            "unlock",
            f"refused unlock: {site.logins['auditor']} (auditor) may not unlock the ledger",
        )
    )
    assert [(row["user"], row["values"]["action"], row["reason"]) for row in rows] == expected
    assert {row["stream"] for row in rows} == {"REFUSALS"}
    with site.connect("auditor") as conn:
        sealed = conn.execute(
            "SELECT login FROM ledger_entries WHERE participant = 'REFUSALS' ORDER BY position"
        ).fetchall()
    assert [login for (login,) in sealed] == [monitor] * 3 + [site.logins["auditor"]]
    code, out, _ = cli(site, "monitor", "--json", "verify")
    assert code == 0 and json.loads(out)["ok"] is True, out
    # Each sealed refusal also gave the read model its clock row: the summaries still answer.
    assert Monitor(site.ledger("monitor")).view.summarised


def refused(user: str, **fields: Any) -> ActionRefused:
    return access.checked(
        ActionRefused, {"action": "lock", "reason": "not permitted", "user": user, **fields}
    )


def test_the_function_seals_a_logins_own_refusal_and_nothing_else(site: Site) -> None:
    monitor = site.ledger("monitor")
    name = site.logins["monitor"]
    version, topic, state = stored_row(monitor, access.Refusals, refused(name))
    misuses = {
        "a refusal in another user's name": stored_row(monitor, access.Refusals, refused(site.logins["dm"])),
        "another record": stored_row(
            monitor, access.Refusals, access.checked(DatabaseLocked, {"reason": "mine now", "user": name})
        ),
        "another stream": stored_row(monitor, access.Trial, refused(name)),
        "another field": stored_row(monitor, access.Refusals, refused(name, site="NFH")),
        "bytes after the state": (version, topic, state + b"x"),
        "another topic": (version, f"{topic}x", state),
    }
    seal = f"SELECT {refusal_seal.SEAL_REFUSAL}(%s, %s, %s)"
    with site.connect("monitor") as conn:
        before = conn.execute(UNCHANGED).fetchone()
        for what, misuse in misuses.items():
            assert sqlstate(conn, seal, *misuse) == DENIED, what
        # Still nothing by hand: no INSERT on any table, whatever the stream.
        for table in ("trialledger_events", "ledger_entries", "ledger_meta", "rm_timeline", "rm_tracking"):
            assert conn.execute("SELECT has_table_privilege(%s, 'INSERT')", (table,)).fetchone() == (False,)
        assert sqlstate(conn, _insert_refusal_row()) == DENIED
        assert conn.execute(UNCHANGED).fetchone() == before
        # Its own refusal, exactly as the ledger makes it, goes in; once: a version another refusal
        # took meanwhile is a conflict, on which the application reads again.
        assert sqlstate(conn, seal, version, topic, state) is None
        assert sqlstate(conn, seal, version, topic, state) == "23505"
    [record] = [e.record for e in site.ledger("auditor").entries() if isinstance(e.record, ActionRefused)]
    assert (record.user, record.id) == (name, "REFUSALS#1")
    code, out, _ = cli(site, "auditor", "--json", "verify")
    assert code == 0 and json.loads(out)["ok"] is True, out


def _insert_refusal_row() -> str:
    return (
        "INSERT INTO trialledger_events (notification_id, originator_id, originator_version, topic, state) "
        "VALUES (1000000, 'REFUSALS', 99, 'forged', '\\x00')"
    )


# -- the function's SQL against the Python the rest of the ledger uses ---------------------------


@pytest.fixture(scope="module")
def encoders(pg_ready: bool) -> Iterator[psycopg.Connection]:
    """A connection to a schema holding the function and its helpers (tables are not needed)."""
    schema = f"tl_test_{uuid.uuid4().hex[:12]}"
    topics = refusal_seal.RefusalTopics("stream", "opened", "recorded")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {0}").format(sql.Identifier(schema)))
        try:
            for statement in refusal_seal.statements(schema, "trialledger_events", topics):
                conn.execute(statement)
            conn.execute(sql.SQL("SET search_path = {0}").format(sql.Identifier(schema)))
            yield conn
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {0} CASCADE").format(sql.Identifier(schema)))


def one(conn: psycopg.Connection, function: str, *args: object) -> Any:
    marks = ", ".join(["%s"] * len(args))
    row = conn.execute(f"SELECT {function}({marks})", args).fetchone()
    assert row is not None
    return row[0]


TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=300)


@given(st.integers(0, 2**63 - 1))
@example(127)
@example(128)
@example(255)
@example(256)
@example(65535)
@example(65536)
@example(2**32 - 1)
@example(2**32)
def test_the_sql_encodes_positions_as_msgpack_does(encoders: psycopg.Connection, n: int) -> None:
    assert one(encoders, refusal_seal.UINT, n) == msgpack.packb(n)


@given(TEXT)
@example("a" * 31)
@example("a" * 32)
@example("é" * 127)
@example("é" * 128)
@example("a" * 65536)
def test_the_sql_encodes_and_reads_texts_as_msgpack_does(encoders: psycopg.Connection, text: str) -> None:
    packed = msgpack.packb(text)
    assert one(encoders, refusal_seal.STR, text) == packed
    if len(packed) < 65536 + 3:
        row = encoders.execute(f"SELECT * FROM {refusal_seal.READ_STR}(%s, 0)", (packed,)).fetchone()
        assert row == (text, len(packed))


@given(st.binary(max_size=600))
@example(b"a" * 255)
@example(b"a" * 256)
@example(b"a" * 65535)
@example(b"a" * 65536)
def test_the_sql_encodes_bytes_as_msgpack_does(encoders: psycopg.Connection, data: bytes) -> None:
    assert one(encoders, refusal_seal.BIN, data) == msgpack.packb(data, use_bin_type=True)


@given(st.integers(0, 2**62), st.binary(min_size=32, max_size=32))
@example(0, bytes(32))
@example(1, bytes(32))
@example(2**20 - 1, bytes(32))
@example(2**62, bytes(32))
def test_the_sql_extends_the_merkle_frontier_as_the_seal_does(
    encoders: psycopg.Connection, size: int, leaf: bytes
) -> None:
    roots = b"".join(hashlib.sha256(leaf + bytes([i])).digest() for i in range(size.bit_count()))
    stored = size.to_bytes(8, "big") + roots
    frontier = Frontier.from_bytes(stored)
    frontier.append(leaf)
    assert one(encoders, refusal_seal.FRONTIER_APPEND, stored, leaf) == frontier.to_bytes()
    assert one(encoders, refusal_seal.FRONTIER_APPEND, None, leaf) == Frontier([leaf]).to_bytes()


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), timezones=st.just(dt.UTC)))
@example(dt.datetime(2014, 1, 6, 9, 0, tzinfo=dt.UTC))
@example(dt.datetime(2106, 2, 7, 6, 28, 16, tzinfo=dt.UTC))
@example(dt.datetime(2514, 5, 30, 1, 53, 4, 123456, tzinfo=dt.UTC))
def test_the_sql_reads_a_recorded_time_as_the_clock_keeps_it(
    encoders: psycopg.Connection, at: dt.datetime
) -> None:
    packed = msgspec.msgpack.encode(at)
    row = encoders.execute(f"SELECT * FROM {refusal_seal.READ_TIME}(%s, 0)", (packed,)).fetchone()
    assert row == (micros(at), len(packed))


@given(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1), TEXT, st.binary(max_size=600))
def test_the_sql_hashes_a_leaf_as_the_seal_does(
    encoders: psycopg.Connection, position: int, version: int, topic: str, state: bytes
) -> None:
    leaf = (
        f"sha256('\\x0095'::bytea || {refusal_seal.UINT}(%s) || {refusal_seal.STR}('REFUSALS') || "
        f"{refusal_seal.UINT}(%s) || {refusal_seal.STR}(%s) || {refusal_seal.BIN}(%s))"
    )
    row = encoders.execute(f"SELECT {leaf}", (position, version, topic, state)).fetchone()
    assert row == (leaf_hash(canonical_entry(position, "REFUSALS", version, topic, state)),)
