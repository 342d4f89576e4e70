"""The read model kept current on the write side, in the events' own transaction (issue 14, issue 12 item 4).

The participant timelines read model (SPEC section 4) is two tables next to the
ledger's: ``rm_timeline``, one row ``(participant, position, stored state)`` per
event, the state deciphered and decompressed (:class:`ledger.storage.codec.Codec`),
and ``rm_tracking``, one row per batch holding the last position the view covers
(the tracked position is the highest).  Both only ever receive ``INSERT``: a write
needs no ``UPDATE`` on any ledger table.

:meth:`TimelineFeed.feed` is the seam every insert of events calls, after the
seal and in the same transaction (:mod:`ledger.storage.stores`,
:mod:`ledger.storage.postgres`): when the view covers every event before the
batch, the batch's rows and its tracking row go in with the events, so a read
never has anything to catch up and never writes.  When the view does not (a
store written by an earlier version, whose view lags or is missing; a rebuild
under way), the feed adds nothing and the view stays as it is, consistent up to
its tracked position; reads then compute the rest from the events in memory
(:mod:`projections.readmodel.timeline`) and ``rebuild`` makes the view whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger.storage.codec import StateCodec

TIMELINE_TABLE = "rm_timeline"
TRACKING_TABLE = "rm_tracking"
# What read-model versions before this one tracked with (the library's tracking table); only dropped.
OLD_TRACKING_TABLES = ("tracking", "trialledger_tracking")
# One row of the view: participant, position, stored state (deciphered, decompressed).
Row = tuple[str, int, bytes]


class TimelineFeed:
    """The view's tables and the statements that keep them current, for either database."""

    def __init__(
        self, prefix: str = "", placeholder: str = "?", blob: str = "BLOB", collate: str = ""
    ) -> None:
        """``prefix`` qualifies the tables (PostgreSQL's schema); the others are the SQL's.

        ``collate`` orders participants by code point (PostgreSQL's ``"C"``; SQLite's
        ``BINARY`` already does), as Python compares them: reads merge the view's rows
        with the events it does not cover by that order.
        """
        p = placeholder
        self.collate = collate
        self.timeline = f"{prefix}{TIMELINE_TABLE}"
        self.tracking = f"{prefix}{TRACKING_TABLE}"
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {self.timeline} (participant TEXT {collate}NOT NULL, "
            f"position BIGINT NOT NULL, state {blob} NOT NULL, PRIMARY KEY (participant, position))",
            f"CREATE INDEX IF NOT EXISTS rm_timeline_position ON {self.timeline} (position)",
            f"CREATE TABLE IF NOT EXISTS {self.tracking} (position BIGINT PRIMARY KEY)",
        ]
        self.insert_row = f"INSERT INTO {self.timeline} VALUES ({p},{p},{p})"
        self.insert_tracking = f"INSERT INTO {self.tracking} (position) VALUES ({p})"
        self.select_tracked = f"SELECT COALESCE(MAX(position), 0) AS tracked FROM {self.tracking}"
        if prefix:
            names = [f"{prefix}{table}" for table in (TIMELINE_TABLE, TRACKING_TABLE)]
            self.select_present = (
                f"SELECT (to_regclass('{names[0]}') IS NOT NULL) AS timeline, "
                f"(to_regclass('{names[1]}') IS NOT NULL) AS tracking"
            )
        else:
            self.select_present = (
                f"SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '{TIMELINE_TABLE}') AS timeline, "
                f"EXISTS (SELECT 1 FROM sqlite_master WHERE name = '{TRACKING_TABLE}') AS tracking"
            )

    def present(self, cursor: Any) -> tuple[bool, bool]:
        """Whether the view's two tables exist: (timeline, tracking)."""
        cursor.execute(self.select_present)
        row = cursor.fetchone()
        return bool(row["timeline"]), bool(row["tracking"])

    def feed(
        self, cursor: Any, positions: Sequence[int], stored_events: Sequence[StoredEvent], codec: StateCodec
    ) -> bool:
        """Add the rows of events just inserted at ``positions`` when the view covers all before them.

        Called inside the write transaction, after the seal, by every path that
        inserts events; whether the rows went in.
        """
        if not positions or self.present(cursor) != (True, True):
            return False
        cursor.execute(self.select_tracked)
        if int(cursor.fetchone()["tracked"]) != positions[0] - 1:
            return False
        plain = codec.plain
        rows = (
            (str(s.originator_id), p, plain(s.state)) for p, s in zip(positions, stored_events, strict=True)
        )
        self.write_rows(cursor, rows)
        cursor.execute(self.insert_tracking, (positions[-1],))
        return True

    def write_rows(self, cursor: Any, rows: Iterable[Row]) -> None:
        """Insert rows of the view (PostgreSQL uses COPY instead)."""
        cursor.executemany(self.insert_row, rows)
