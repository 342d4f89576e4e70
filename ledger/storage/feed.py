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

The same call adds the batch's participant summaries and its clock row
(:mod:`ledger.storage.summaries`), which make ``status`` and ``endpoints`` a
lookup, when they cover every event before the batch; a store whose
summaries lag, or that has none (written by an earlier version), is answered
by a replay of the timelines until ``rebuild``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from eventsourcing.persistence import StoredEvent

from ledger.storage.codec import StateCodec
from ledger.storage.summaries import BatchSeen, SummaryTables, SummaryWriter

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
        self.summaries = SummaryTables(prefix, placeholder, blob, collate, self.timeline)
        self.writer = SummaryWriter(self.summaries)
        self.create_statements = [
            f"CREATE TABLE IF NOT EXISTS {self.timeline} (participant TEXT {collate}NOT NULL, "
            f"position BIGINT NOT NULL, state {blob} NOT NULL, PRIMARY KEY (participant, position))",
            f"CREATE INDEX IF NOT EXISTS rm_timeline_position ON {self.timeline} (position)",
            f"CREATE TABLE IF NOT EXISTS {self.tracking} (position BIGINT PRIMARY KEY)",
            *self.summaries.create_statements,
        ]
        self.insert_row = f"INSERT INTO {self.timeline} VALUES ({p},{p},{p})"
        self.insert_tracking = f"INSERT INTO {self.tracking} (position) VALUES ({p})"
        names = [TIMELINE_TABLE, TRACKING_TABLE, *self.summaries.names]
        if prefix:
            present = [f"(to_regclass('{prefix}{name}') IS NOT NULL) AS {name}" for name in names]
        else:
            present = [
                f"EXISTS (SELECT 1 FROM sqlite_master WHERE name = '{name}') AS {name}" for name in names
            ]
        self.select_present = f"SELECT {', '.join(present)}"
        self.select_tracked_only = f"SELECT COALESCE(MAX(position), 0) AS tracked FROM {self.tracking}"
        self.select_tracked = (
            f"SELECT COALESCE(MAX(position), 0) AS tracked, "
            f"(SELECT COALESCE(MAX(position), 0) FROM {self.summaries.clock}) AS summarised "
            f"FROM {self.tracking}"
        )

    def present(self, cursor: Any) -> Present:
        """Which of the view's tables exist."""
        cursor.execute(self.select_present)
        row = cursor.fetchone()
        return Present(
            bool(row[TIMELINE_TABLE]),
            bool(row[TRACKING_TABLE]),
            bool(row[self.summaries.names[0]]) and bool(row[self.summaries.names[1]]),
        )

    def feed(
        self, cursor: Any, positions: Sequence[int], stored_events: Sequence[StoredEvent], codec: StateCodec
    ) -> bool:
        """Add the rows of events just inserted at ``positions`` when the view covers all before them.

        Called inside the write transaction, after the seal, by every path that
        inserts events; whether the rows went in.  The summaries and the clock
        row of the batch go in with them when the summaries cover all before it.
        """
        if not positions:
            return False
        found = self.present(cursor)
        if not (found.timeline and found.tracking):
            return False
        cursor.execute(self.select_tracked if found.summaries else self.select_tracked_only)
        row = cursor.fetchone()
        if int(row["tracked"]) != positions[0] - 1:
            return False
        seen = BatchSeen() if found.summaries and int(row["summarised"]) == positions[0] - 1 else None
        plain = codec.plain

        def rows() -> Iterator[Row]:
            for position, stored in zip(positions, stored_events, strict=True):
                state = plain(stored.state)
                if seen is not None:
                    seen.see(str(stored.originator_id), stored.topic, state)
                yield str(stored.originator_id), position, state

        self.write_rows(cursor, rows())
        cursor.execute(self.insert_tracking, (positions[-1],))
        if seen is not None:
            self.writer.write(cursor, positions[0], positions[-1], seen)
        return True

    def write_rows(self, cursor: Any, rows: Iterable[Row]) -> None:
        """Insert rows of the view (PostgreSQL uses COPY instead)."""
        cursor.executemany(self.insert_row, rows)

    def secure(self, cursor: Any) -> None:
        """Guard the tables ``rebuild`` has just made anew: nothing on SQLite (PostgreSQL's policies)."""


class Present(NamedTuple):
    """Which of the view's tables exist: the timelines, their tracking, the summaries (both tables)."""

    timeline: bool
    tracking: bool
    summaries: bool
