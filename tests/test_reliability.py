"""The fast write path stores exactly what the plain one does (issue #7).

The bulk import's shortcuts (no load for new participants, an indexed chart,
events built without an aggregate, positions computed under the write lock, one
``executemany``/``COPY``, the seal hashing the record's bytes as stored) must not
change one stored byte: the same lines at the same clock give the same events,
positions, ledger entries and tree head as the plain path: the aggregate for
every line, the library's row-by-row insert and a seal that decodes every
record (re-implemented here from SPEC section 5, with ``msgpack`` itself for the
canonical bytes).  Run on both stores: PostgreSQL's ``COPY`` path must give the
bytes of SQLite's plain one.  PostgreSQL failures (a dropped connection, a locked
table) are in ``test_pg_faults.py``.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from ledger.application.importer import read_lines
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import Refused
from ledger.domain.rules.ordering import Chart
from ledger.evidence.merkle import Frontier, leaf_hash
from ledger.simulation.demo import generate_trial, write_jsonl
from ledger.storage.seal import GENESIS, Seal, chain_hash, content_hash
from ledger.storage.stores import LedgerSQLiteRecorder
from ledger.storage.transcoder import decode_state
from tests import lines as L

USER = "nfh.chen"
T0 = dt.datetime(2016, 12, 31, 9, 0, tzinfo=dt.UTC)


def _plain_seal(
    seal: Seal, cursor: Any, positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> None:
    """SPEC section 5 from scratch: decode each record, hash its re-encoding, pack with ``msgpack``."""
    cursor.execute(seal.select_meta)
    meta = {row["key"]: bytes(row["value"]) for row in cursor.fetchall()}
    frontier = Frontier.from_bytes(meta["frontier"]) if "frontier" in meta else Frontier()
    chain = meta.get("chain", GENESIS)
    rows = []
    for position, stored in zip(positions, stored_events, strict=True):
        record = decode_state(stored.state).record
        entry = [position, str(stored.originator_id), stored.originator_version, stored.topic, stored.state]
        leaf = leaf_hash(msgpack.packb(entry, use_bin_type=True))
        chain = chain_hash(chain, leaf)
        frontier.append(leaf)
        rows.append((position, record.id, str(stored.originator_id), content_hash(record), leaf, chain))
    cursor.executemany(seal.insert_entry, rows)
    cursor.executemany(seal.upsert_meta, [("frontier", frontier.to_bytes()), ("chain", chain)])


def _plain_insert(
    self: LedgerSQLiteRecorder, cursor: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
) -> Sequence[int]:
    """The library's row-by-row insert (``lastrowid``), then the plain seal, in the library's transaction."""
    positions = SQLiteApplicationRecorder._insert_events(self, cursor, stored_events, **kwargs)
    assert positions is not None
    _plain_seal(self.seal, cursor, positions, stored_events)
    return positions


@pytest.fixture
def plain_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Switch the write path to the plain one (for the reference store only)."""

    def switch() -> None:
        # Every participant loaded through the repository (new ones found missing),
        # the aggregate for every line, a chart read by scans (not its type index), the library's insert.
        monkeypatch.setattr(Seal, "participants", lambda self, datastore, candidates: set(candidates))
        monkeypatch.setattr(
            Chart, "of_type", lambda self, kind: [r for r in self.records.values() if isinstance(r, kind)]
        )
        monkeypatch.setattr(Chart, "first", lambda self, kind: next(iter(self.of_type(kind)), None))
        monkeypatch.setattr(LedgerSQLiteRecorder, "_insert_events", _plain_insert)

    return switch


def _rows(ledger: TrialLedger) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored byte: events by position, ledger entries, tree head and chain."""
    recorder: Any = ledger.recorder
    postgres = recorder.seal.placeholder == "%s"
    events = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"' if postgres else "stored_events"
    position = "notification_id" if postgres else "rowid"
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT {position} AS p, originator_id, originator_version, topic, state "
            f"FROM {events} ORDER BY p"
        )
        stored = [
            (r["p"], r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
            for r in cursor.fetchall()
        ]
        cursor.execute(f"SELECT * FROM {recorder.seal.entries} ORDER BY position")
        entries = [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r.values()) if postgres else tuple(r)
            for r in cursor.fetchall()
        ]
        cursor.execute(
            f"SELECT key, value FROM {recorder.seal.meta} WHERE key IN ('frontier', 'chain') ORDER BY key"
        )
        meta = [(r["key"], bytes(r["value"])) for r in cursor.fetchall()]
    return {"events": stored, "entries": entries, "meta": meta}


def _write_everything(store: str, trial: list[bytes]) -> TrialLedger:
    """The same writes, at the same clock: two imports, a retried import, a refused enrollment."""
    moments = iter(T0 + dt.timedelta(minutes=n) for n in range(100))
    clock = lambda: next(moments)  # noqa: E731 - a fresh moment for each write
    ledger = TrialLedger(store, clock=clock)
    first, second = trial[: len(trial) * 2 // 3], trial[len(trial) * 2 // 3 :]
    ledger.record(read_lines(io.BytesIO(b"".join(first))), user=USER)  # new participants
    ledger.record(read_lines(io.BytesIO(b"".join(second))), user=USER)  # existing ones, and new
    assert ledger.record(read_lines(io.BytesIO(b"".join(second))), user=USER).stored == []
    ledger.record(L.as_lines([L.screening("ZSH-777", hr=150)]), user=USER)
    with pytest.raises(Refused):
        ledger.record(L.as_lines([L.enrollment("ZSH-777")]), user=USER, record_refusal=True)
    return ledger


def test_the_fast_path_stores_exactly_what_the_plain_path_stores(
    store_url: str, tmp_path: Path, plain_path: Callable[[], None]
) -> None:
    trial_file = tmp_path / "trial.jsonl"
    write_jsonl(generate_trial(60, 11), trial_file)
    trial = trial_file.read_bytes().splitlines(keepends=True)
    fast = _rows(_write_everything(store_url, trial))
    plain_path()
    plain = _rows(_write_everything(str(tmp_path / "plain.db"), trial))
    assert len(fast["events"]) == len(trial) + 2
    assert fast["events"] == plain["events"]
    assert fast["entries"] == plain["entries"]
    assert fast["meta"] == plain["meta"]
