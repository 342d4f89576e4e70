"""Tamper evidence (SPEC section 5): every kind of tampering done with plain SQL is caught.

Each test builds a small random trial through :meth:`TrialLedger.record` on a
real store (SQLite and PostgreSQL, via the ``store_url`` fixture), then acts as
an attacker with database access: plain SQL on the events table,
``ledger_entries`` and ``ledger_meta``.  ``trial-ledger verify --json`` must
exit 1 and name the first position that does not match (and the event id
where the seal still knows it).  The limits documented in
:mod:`ledger.application.verification` are tested too: a consistent rewrite of both tables
passes ``verify`` alone and is caught by ``verify --digest`` with a digest
published before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import verification
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import Digest, current_digest, verify
from ledger.domain.events import Record, decode_line
from ledger.evidence.merkle import Frontier, leaf_hash
from ledger.storage import scan
from ledger.storage.seal import GENESIS, canonical_entry, chain_hash
from ledger.storage.stores import is_postgres
from ledger.storage.transcoder import record_bytes

SITES = ("NFH", "AMMS", "PKUPH", "SYSU", "ZSH")


def _line(**fields: Any) -> Record:
    return decode_line(json.dumps(fields))


def trial_batches(seed: int, participants: int, first: int = 1) -> list[tuple[str, list[Record]]]:
    """A small random trial as ``(user, records)`` batches, in the order to record them.

    Screening, enrollment, one or two infusions, CMV results, some adverse
    events, then corrections and voids of some of them.  Client ids name the
    events that corrections and voids target.  Participants are numbered from
    ``first`` (to grow a ledger with new ones).
    """
    rng = random.Random(seed)
    batches: list[tuple[str, list[Record]]] = []
    amendments: list[tuple[str, list[Record]]] = []
    for number in range(first, first + participants):
        code = f"{rng.choice(SITES)}-{number:03d}"
        site = code.split("-")[0]
        day0 = dt.date(2014, 1, 6) + dt.timedelta(days=rng.randrange(400))

        def on(days: int, day0: dt.date = day0) -> str:
            return (day0 + dt.timedelta(days=days)).isoformat()

        records = [
            _line(
                type="ParticipantScreened", participant=code, site=site, effective=on(0),
                age_years=rng.randint(14, 65), sex=rng.choice("MFU"), refractory_cmv="infection",
                consent_date=on(0), consent_by="participant", hr=rng.randint(60, 100), rr=16, sbp=120, dbp=75,
            ),
            _line(type="ParticipantEnrolled", participant=code, effective=on(2),
                  weight_kg=round(rng.uniform(40, 90), 1)),
            _line(type="MSCInfused", id=f"{code}/inf1", participant=code, effective=on(3), course=1,
                  cells_per_kg=rng.choice([1e6, 950000, 1.2e6])),
        ]  # fmt: skip
        for k in range(rng.randint(1, 4)):
            quantified = rng.random() < 0.5
            records.append(
                _line(
                    type="CMVLoadMeasured", id=f"{code}/cmv{k}", participant=code, effective=on(5 + 4 * k),
                    specimen="plasma", assay="COBAS AmpliPrep/TaqMan", lloq_iu_ml=137,
                    result="quantified" if quantified else "not_detected",
                    **({"value_iu_ml": rng.randint(200, 90000)} if quantified else {}),
                )
            )  # fmt: skip
        if rng.random() < 0.4:
            records.append(
                _line(
                    type="AdverseEventReported", participant=code, effective=on(6), ae_id="AE1",
                    term="pneumonia", category="infection", grade=3, serious=True,
                    criteria=["hospitalisation"], causality="unlikely", aware_at=f"{on(6)}T09:30:00+08:00",
                )
            )  # fmt: skip
        batches.append((rng.choice(["nfh.chen", "amms.li", "sysu.wang"]), records))
        if rng.random() < 0.5:
            amendments.append(
                ("monitor.zhao", [_line(type="EventCorrected", target=f"{code}/inf1",
                                        changes={"cells_per_kg": 1.05e6, "lot": "L-7"}, reason="SDV")])
            )  # fmt: skip
        if rng.random() < 0.3:
            amendments.append(
                (
                    "monitor.zhao",
                    [_line(type="EventVoided", target=f"{code}/cmv0", reason="entered in error")],
                )
            )
    return batches + amendments


def build_trial(store: str, seed: int = 7, participants: int = 12) -> TrialLedger:
    ledger = TrialLedger(store)
    for user, records in trial_batches(seed, participants):
        ledger.record(records, user=user)
    return ledger


def run(store: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["--store", store, *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


class Attacker:
    """Plain SQL on the store, as someone with database access would run it."""

    def __init__(self, url: str) -> None:
        self.postgres = is_postgres(url)
        if self.postgres:
            import psycopg

            parts = urlparse(url)
            schema = parse_qs(parts.query)["schema"][0]
            self.conn: Any = psycopg.connect(parts._replace(query="").geturl(), autocommit=True)
            self.conn.execute(f'SET search_path TO "{schema}"')
            self.pos, self.events = "notification_id", "trialledger_events"
        else:
            self.conn = sqlite3.connect(url, isolation_level=None)
            self.pos, self.events = "rowid", "stored_events"

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        statement = statement.replace("{pos}", self.pos).replace("{events}", self.events)
        if self.postgres:
            statement = statement.replace("?", "%s")
        cursor = self.conn.execute(statement, params)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        except Exception:  # statements without rows
            return []

    def rows(self) -> list[tuple[int, str]]:
        """``(position, event id)`` of every sealed event, in order."""
        return self.sql("SELECT position, event_id FROM ledger_entries ORDER BY position")  # type: ignore[return-value]

    def event(self, position: int) -> tuple[str, int, str, bytes]:
        row = self.sql(
            "SELECT originator_id, originator_version, topic, state FROM {events} WHERE {pos} = ?",
            (position,),
        )[0]
        return str(row[0]), int(row[1]), str(row[2]), bytes(row[3])

    def set_state(self, position: int, state: bytes) -> None:
        self.sql("UPDATE {events} SET state = ? WHERE {pos} = ?", (state, position))

    def move(self, table: str, column: str, old: int, new: int) -> None:
        self.sql(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))

    def swap(self, table: str, column: str, a: int, b: int) -> None:
        self.move(table, column, a, -1)
        self.move(table, column, b, a)
        self.move(table, column, -1, b)

    def reseal(self, from_position: int) -> None:
        """Recompute every leaf, chain hash and the head from ``from_position`` on, and the read
        model from the events: a full rewrite of every table the ledger keeps."""
        chain, frontier = GENESIS, Frontier()
        for position, _ in self.rows():
            originator, version, topic, state = self.event(position)
            leaf = leaf_hash(canonical_entry(position, originator, version, topic, state))
            chain = chain_hash(chain, leaf)
            frontier.append(leaf)
            if position >= from_position:
                try:  # what the seal hashes: the record's bytes as stored
                    content = hashlib.sha256(record_bytes(state)).digest()
                except msgspec.DecodeError:
                    content = hashlib.sha256(state).digest()
                self.sql(
                    "UPDATE ledger_entries SET leaf_hash = ?, chain_hash = ?, content_hash = ? "
                    "WHERE position = ?",
                    (leaf, chain, content, position),
                )
        self.sql("UPDATE ledger_meta SET value = ? WHERE key = 'frontier'", (frontier.to_bytes(),))
        self.sql("UPDATE ledger_meta SET value = ? WHERE key = 'chain'", (chain,))
        self.sql("DELETE FROM rm_timeline")
        self.sql("DELETE FROM rm_tracking")
        self.sql("INSERT INTO rm_timeline SELECT originator_id, {pos}, state FROM {events}")
        self.sql("INSERT INTO rm_tracking SELECT MAX({pos}) FROM {events}")
        # The summaries go: a read model without them is what an earlier version kept.
        self.sql("DROP TABLE rm_summary")
        self.sql("DROP TABLE rm_clock")

    def close(self) -> None:
        self.conn.close()


def edited(state: bytes, **changes: Any) -> bytes:
    """The stored state with some record fields changed: a plausible, well-formed edit."""
    data = msgspec.msgpack.decode(state)
    data["record"].update(changes)
    return msgspec.msgpack.encode(data)


@pytest.fixture
def trial(store_url: str) -> Iterator[tuple[str, Attacker, list[tuple[int, str]]]]:
    ledger = build_trial(store_url)
    ledger.close()
    attacker = Attacker(store_url)
    yield store_url, attacker, attacker.rows()
    attacker.close()


# -- a clean ledger -----------------------------------------------------------------------


def test_verify_passes_on_a_generated_trial(store_url: str) -> None:
    ledger = build_trial(store_url, seed=3, participants=15)
    code, data = run(store_url, "verify")
    assert code == 0
    assert data == {"ok": True, "size": ledger.recorder.max_notification_id(), "first_bad": None}
    head = current_digest(ledger)
    assert verify(ledger).root == head.root and head.size == data["size"]


def test_verify_passes_on_a_new_ledger(sqlite_url: str) -> None:
    # A new ledger holds one event: init's adoption of the protocol (SPEC section 2).
    assert run(sqlite_url, "init")[0] == 0
    assert run(sqlite_url, "verify") == (0, {"ok": True, "size": 1, "first_bad": None})
    code, digest = run(sqlite_url, "digest")
    assert code == 0 and digest["size"] == 1 and digest["root"] != Frontier().root().hex()


def test_verify_passes_on_an_empty_ledger(sqlite_url: str) -> None:
    TrialLedger(sqlite_url).close()  # the tables, no event at all
    assert run(sqlite_url, "verify") == (0, {"ok": True, "size": 0, "first_bad": None})
    assert run(sqlite_url, "digest") == (0, {"size": 0, "root": Frontier().root().hex()})


def test_verify_streams_in_small_batches(sqlite_url: str) -> None:
    """Batch boundaries change nothing: the same verdict with one row a batch."""
    ledger = build_trial(sqlite_url, participants=4)
    assert verify(ledger, batch=1).to_json() == verify(ledger).to_json()
    attacker = Attacker(sqlite_url)
    position, _ = attacker.rows()[9]
    attacker.set_state(position, edited(attacker.event(position)[3], user="mallory"))
    for batch in (1, 3, 10, 10_000):
        assert verify(ledger, batch=batch).first_bad.position == position  # type: ignore[union-attr]


# -- stored events tampered --------------------------------------------------------------

INSERT_EVENT = (
    "INSERT INTO {events} (originator_id, originator_version, topic, state, {pos}) VALUES (?, ?, ?, ?, ?)"
)
Scenario = Callable[[Attacker, list[tuple[int, str]]], tuple[int | None, str | None]]


def modify_field(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[len(rows) // 2]
    a.set_state(position, edited(a.event(position)[3], user="mallory"))
    return position, event_id


def modify_byte(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[len(rows) // 3]
    state = bytearray(a.event(position)[3])
    state[-1] ^= 0x01
    a.set_state(position, bytes(state))
    return position, event_id


def modify_topic(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[5]
    a.sql(
        "UPDATE {events} SET topic = 'ledger.domain.participant:Participant.Died' WHERE {pos} = ?",
        (position,),
    )
    return position, event_id


def modify_first(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[0]
    a.set_state(position, edited(a.event(position)[3], age_years=30))
    return position, event_id


def modify_last(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[-1]
    a.set_state(position, edited(a.event(position)[3], reason="changed"))
    return position, event_id


def delete_event(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[len(rows) // 2]
    a.sql("DELETE FROM {events} WHERE {pos} = ?", (position,))
    return position, event_id


def delete_event_and_seal(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, _ = rows[len(rows) // 2]
    a.sql("DELETE FROM {events} WHERE {pos} = ?", (position,))
    a.sql("DELETE FROM ledger_entries WHERE position = ?", (position,))
    return position, None


def delete_and_renumber(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Delete from both tables and close the gap, so positions stay consecutive."""
    position, _ = rows[len(rows) // 2]
    moved_id = rows[len(rows) // 2 + 1][1]
    a.sql("DELETE FROM {events} WHERE {pos} = ?", (position,))
    a.sql("DELETE FROM ledger_entries WHERE position = ?", (position,))
    for later, _ in rows:
        if later > position:
            a.move("{events}", a.pos, later, later - 1)
            a.move("ledger_entries", "position", later, later - 1)
    return position, moved_id  # the next event now sits here, its leaf sealed for another position


def insert_unsealed_at_end(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    originator, _, topic, state = a.event(rows[4][0])
    forged = edited(state, id="forged-1")
    position = rows[-1][0] + 1
    a.sql(
        INSERT_EVENT,
        (originator, 999, topic, forged, position),
    )
    return position, "forged-1"


def insert_unsealed_in_middle(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Make room by moving the later events up one position, then insert."""
    position, event_id = rows[len(rows) // 2]
    for later, _ in reversed(rows):
        if later >= position:
            a.move("{events}", a.pos, later, later + 1)
    originator, _, topic, state = a.event(rows[2][0])
    a.sql(
        INSERT_EVENT,
        (originator, 999, topic, edited(state, id="forged-2"), position),
    )
    return position, event_id  # the seal at this position is still the original event's


def insert_sealed_in_middle(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Insert an event with a forged, correct-looking seal of its own: the next one breaks."""
    position, event_id = rows[len(rows) // 2]
    for later, _ in reversed(rows):
        if later >= position:
            a.move("{events}", a.pos, later, later + 1)
            a.move("ledger_entries", "position", later, later + 1)
    originator, _, topic, state = a.event(rows[2][0])
    forged = edited(state, id="forged-3")
    a.sql(
        INSERT_EVENT,
        (originator, 999, topic, forged, position),
    )
    previous = a.sql("SELECT chain_hash FROM ledger_entries WHERE position = ?", (position - 1,))[0][0]
    leaf = leaf_hash(canonical_entry(position, originator, 999, topic, forged))
    content = hashlib.sha256(msgspec.msgpack.encode(msgspec.msgpack.decode(forged)["record"]))
    a.sql(
        "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?)",
        (position, "forged-3", originator, content.digest(), leaf, chain_hash(bytes(previous), leaf)),
    )
    return position + 1, event_id  # the original event, moved: its leaf no longer fits


def append_sealed_without_head(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Append an event with a correct ledger entry, but leave the tree head alone."""
    position = rows[-1][0] + 1
    forge_sealed_append(a, position, "forged-4")
    return position, "forged-4"


def forge_sealed_append(a: Attacker, position: int, event_id: str) -> None:
    originator, _, topic, state = a.event(a.rows()[3][0])
    forged = edited(state, id=event_id)
    a.sql(INSERT_EVENT, (originator, 998, topic, forged, position))
    previous = a.sql("SELECT chain_hash FROM ledger_entries WHERE position = ?", (position - 1,))[0][0]
    leaf = leaf_hash(canonical_entry(position, originator, 998, topic, forged))
    content = hashlib.sha256(record_bytes(forged)).digest()
    a.sql(
        "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?)",
        (position, event_id, originator, content, leaf, chain_hash(bytes(previous), leaf)),
    )


def reorder(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    (first, first_id), (second, _) = rows[4], rows[9]
    a.swap("{events}", a.pos, first, second)
    return first, first_id


def reorder_both_tables(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Swap two events and their seals: the position is inside each leaf."""
    (first, _), (second, second_id) = rows[4], rows[9]
    a.swap("{events}", a.pos, first, second)
    a.swap("ledger_entries", "position", first, second)
    return first, second_id


def truncate(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    cut = rows[-3][0]
    a.sql("DELETE FROM {events} WHERE {pos} >= ?", (cut,))
    a.sql("DELETE FROM ledger_entries WHERE position >= ?", (cut,))
    return cut, None


def truncate_events_only(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    cut, cut_id = rows[-3]
    a.sql("DELETE FROM {events} WHERE {pos} >= ?", (cut,))
    return cut, cut_id


# -- the seal tampered ------------------------------------------------------------------------


def edit_leaf(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[7]
    a.sql("UPDATE ledger_entries SET leaf_hash = ? WHERE position = ?", (bytes(32), position))
    return position, event_id


def edit_chain(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[7]
    a.sql("UPDATE ledger_entries SET chain_hash = ? WHERE position = ?", (bytes(32), position))
    return position, event_id


def edit_event_id(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, _ = rows[7]
    a.sql("UPDATE ledger_entries SET event_id = 'renamed' WHERE position = ?", (position,))
    return position, "renamed"


def edit_participant(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[7]
    a.sql("UPDATE ledger_entries SET participant = 'NFH-999' WHERE position = ?", (position,))
    return position, event_id


def edit_content_hash(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    position, event_id = rows[7]
    a.sql("UPDATE ledger_entries SET content_hash = ? WHERE position = ?", (bytes(32), position))
    return position, event_id


def modify_and_reseal_leaf(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Edit an event and its own seal row (leaf, content hash); the chain gives it away."""
    position, event_id = rows[len(rows) // 2]
    originator, version, topic, state = a.event(position)
    forged = edited(state, user="mallory")
    a.set_state(position, forged)
    leaf = leaf_hash(canonical_entry(position, originator, version, topic, forged))
    a.sql("UPDATE ledger_entries SET leaf_hash = ? WHERE position = ?", (leaf, position))
    return position, event_id


def forge_entry_before_first(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    a.sql(
        "INSERT INTO ledger_entries VALUES (0, 'ghost', 'NFH-001', ?, ?, ?)",
        (bytes(32), bytes(32), bytes(32)),
    )
    return 0, "ghost"


def unreadable_event_resealed(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    """Garbage bytes, with every hash rewritten to match: still not a ledger event."""
    position, event_id = rows[len(rows) // 2]
    a.set_state(position, b"\xc1 not MessagePack")
    a.reseal(position)
    return position, event_id


def edit_head(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    frontier = Frontier([bytes(32)] * len(rows))
    a.sql("UPDATE ledger_meta SET value = ? WHERE key = 'frontier'", (frontier.to_bytes(),))
    return None, None


def edit_head_chain(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    a.sql("UPDATE ledger_meta SET value = ? WHERE key = 'chain'", (bytes(32),))
    return None, None


def delete_head(a: Attacker, rows: list[tuple[int, str]]) -> tuple[int | None, str | None]:
    a.sql("DELETE FROM ledger_meta")
    return None, None


SCENARIOS: list[Scenario] = [
    modify_field,
    modify_byte,
    modify_topic,
    modify_first,
    modify_last,
    delete_event,
    delete_event_and_seal,
    delete_and_renumber,
    insert_unsealed_at_end,
    insert_unsealed_in_middle,
    insert_sealed_in_middle,
    append_sealed_without_head,
    reorder,
    reorder_both_tables,
    truncate,
    truncate_events_only,
    edit_leaf,
    edit_chain,
    edit_event_id,
    edit_participant,
    edit_content_hash,
    modify_and_reseal_leaf,
    forge_entry_before_first,
    unreadable_event_resealed,
    edit_head,
    edit_head_chain,
    delete_head,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_tampering_is_detected_and_located(
    scenario: Scenario, trial: tuple[str, Attacker, list[tuple[int, str]]]
) -> None:
    store, attacker, rows = trial
    assert_located(store, attacker, *scenario(attacker, rows))


def assert_located(store: str, attacker: Attacker, position: int | None, event_id: str | None) -> None:
    """``verify`` exits 1 naming ``position`` and ``event_id`` first, and counts the events stored."""
    code, data = run(store, "verify")
    assert code == 1, data
    assert data["ok"] is False
    assert set(data) == {"ok", "size", "first_bad"}
    bad = data["first_bad"]
    assert (bad["position"], bad["event_id"]) == (position, event_id), bad["problem"]
    assert bad["problem"]
    assert data["size"] == attacker.sql("SELECT COUNT(*) FROM {events}")[0][0]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_two_halves_at_once_on_postgresql_locate_the_same(
    scenario: Scenario, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large PostgreSQL ledger is recomputed in two halves at once (issue 14): split in the middle,
    every tampering is named as one pass names it."""
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)
    build_trial(pg_url).close()
    attacker = Attacker(pg_url)
    assert_located(pg_url, attacker, *scenario(attacker, attacker.rows()))
    attacker.close()


def test_two_halves_check_published_digests_as_one_pass_does(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Digests of every size against halves that meet anywhere: the same verdicts as one pass, before
    and after a consistent rewrite of the ledger (which only a digest published before catches)."""
    ledger = build_trial(pg_url, seed=1, participants=3)
    digests = [Digest(0, Frontier().root()), current_digest(ledger)]
    for user, records in trial_batches(2, 2, first=100):
        ledger.record(records, user=user)
        digests.append(current_digest(ledger))
    attacker = Attacker(pg_url)
    positions = [position for position, _ in attacker.rows()]

    def verdicts() -> list[list[dict[str, Any]]]:
        found = []
        for half in [None, *positions[:-1:3]]:
            monkeypatch.setattr(verification, "_half", lambda snap, half=half: half)
            found.append([verify(ledger, digest).to_json() for digest in digests])
        return found

    honest = verdicts()
    assert all(verdict["ok"] for verdict in honest[0]) and all(split == honest[0] for split in honest)
    position = positions[len(positions) // 2]
    attacker.set_state(position, edited(attacker.event(position)[3], user="mallory"))
    attacker.reseal(position)
    attacker.close()
    rewritten = verdicts()
    rank = positions.index(position)  # digests of the events before it only are still consistent
    assert [verdict["digest"]["consistent"] for verdict in rewritten[0]] == [d.size <= rank for d in digests]
    assert all(split == rewritten[0] for split in rewritten)


@pytest.mark.parametrize(
    "scenario",
    [modify_first, delete_event, delete_event_and_seal, insert_unsealed_in_middle, reorder, edit_chain],
    ids=lambda s: s.__name__,
)
def test_a_stream_stopped_mid_way_on_postgresql_locates_the_same(
    scenario: Scenario, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL streams the events (issue 14); the scan stops at the first suspect row, the query is
    cancelled, and the diagnosis queries the same snapshot.  The server is made to send one row at a
    time, in index order, pausing a moment before each, so that the query still runs when the scan stops
    (the cancel then aborts it: without the stream's savepoint the diagnosis fails)."""
    select = scan.Snapshot.__init__

    def slowed(self: scan.Snapshot, tables: scan.Tables, cursor: Any) -> None:
        select(self, tables, cursor)
        self._sealed_select += "AND EXISTS (SELECT FROM pg_sleep(0.002 * sign(s.notification_id))) "

    monkeypatch.setattr(scan.Snapshot, "__init__", slowed)
    monkeypatch.setenv("PGOPTIONS", "-c enable_sort=off")
    monkeypatch.setattr(scan, "STREAM_CHUNK", 1)
    monkeypatch.setattr(verification, "BATCH_POSTGRES", 1)
    build_trial(pg_url).close()
    attacker = Attacker(pg_url)
    assert_located(pg_url, attacker, *scenario(attacker, attacker.rows()))
    attacker.close()


def test_human_output_names_the_position(sqlite_url: str) -> None:
    build_trial(sqlite_url, participants=3).close()
    attacker = Attacker(sqlite_url)
    position, event_id = modify_field(attacker, attacker.rows())
    result = CliRunner().invoke(main, ["--store", sqlite_url, "verify"])
    assert result.exit_code == 1
    assert f"TAMPERED at position {position} (event {event_id})" in result.stdout


# -- what only a published digest catches -------------------------------------------------------


def test_a_consistent_rewrite_passes_verify_but_not_a_published_digest(
    trial: tuple[str, Attacker, list[tuple[int, str]]], tmp_path: Path
) -> None:
    store, attacker, rows = trial
    published = tmp_path / "digest.json"
    assert run(store, "digest", "--out", str(published))[0] == 0
    position, _ = rows[len(rows) // 2]
    attacker.set_state(position, edited(attacker.event(position)[3], user="mallory"))
    attacker.reseal(position)
    assert run(store, "verify") == (0, {"ok": True, "size": len(rows), "first_bad": None})
    code, data = run(store, "verify", "--digest", str(published))
    assert code == 1
    assert data["first_bad"]["position"] is None
    assert "rewritten" in data["first_bad"]["problem"]
    assert data["digest"]["consistent"] is False


def test_a_truncation_with_a_rewritten_head_is_caught_by_a_published_digest(
    trial: tuple[str, Attacker, list[tuple[int, str]]], tmp_path: Path
) -> None:
    store, attacker, rows = trial
    published = tmp_path / "digest.json"
    run(store, "digest", "--out", str(published))
    cut = rows[-2][0]
    attacker.sql("DELETE FROM {events} WHERE {pos} >= ?", (cut,))
    attacker.sql("DELETE FROM ledger_entries WHERE position >= ?", (cut,))
    attacker.reseal(10**9)
    assert run(store, "verify")[0] == 0
    code, data = run(store, "verify", "--digest", str(published))
    assert code == 1
    assert data["first_bad"]["position"] == cut
    assert "removed" in data["first_bad"]["problem"]


def test_an_old_digest_is_a_prefix_of_the_grown_ledger(store_url: str, tmp_path: Path) -> None:
    ledger = build_trial(store_url, seed=1, participants=5)
    old = tmp_path / "old.json"
    run(store_url, "digest", "--out", str(old))
    for user, records in trial_batches(2, 4, first=100):
        ledger.record(records, user=user)
    code, data = run(store_url, "verify", "--digest", str(old))
    assert code == 0
    assert data["ok"] is True and data["first_bad"] is None
    assert data["digest"] == {**json.loads(old.read_text()), "consistent": True}
    assert data["size"] > Digest.load(old).size


def test_a_digest_from_another_ledger_is_not_a_prefix(sqlite_url: str, tmp_path: Path) -> None:
    build_trial(sqlite_url, seed=1, participants=3)
    other = str(tmp_path / "other.db")
    build_trial(other, seed=2, participants=2)
    digest = tmp_path / "other.json"
    run(other, "digest", "--out", str(digest))
    code, data = run(sqlite_url, "verify", "--digest", str(digest))
    assert code == 1 and data["digest"]["consistent"] is False


def test_a_malformed_digest_file_is_invalid_input(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"size": 3, "root": "xyz"}')
    result = CliRunner().invoke(main, ["--store", sqlite_url, "verify", "--digest", str(bad)])
    assert result.exit_code == 2
    assert "root" in result.stderr


def test_a_fully_sealed_append_passes_verify(trial: tuple[str, Attacker, list[tuple[int, str]]]) -> None:
    """The documented limit: digests protect the past; an append sealed like the ledger's is one."""
    store, attacker, rows = trial
    forge_sealed_append(attacker, rows[-1][0] + 1, "forged-5")
    attacker.reseal(10**9)
    code, data = run(store, "verify")
    assert code == 0 and data["size"] == len(rows) + 1
    code, data = run(store, "audit", "--json")
    assert data["entries"][-1]["event_id"] == "forged-5"  # but it shows, with its claimed user and time
