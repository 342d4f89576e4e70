"""The participant timelines read model: a tracked, restartable projection (SPEC section 4).

Status and endpoints depend on two times chosen at query time (``--as-of`` and
``--known-at``), so what is worth persisting is each participant's stored
events, grouped by participant and kept in ledger order, each with the time the
ledger recorded it: any as-of date and any known-at moment can then be answered
from it (:mod:`projections.readmodel.queries`).

The view is an eventsourcing tracking recorder: every batch of rows is written
in the same transaction as the tracking record of the last notification it
covers, so a projection killed mid-way restarts exactly where it stopped and
never applies an event twice.  It follows the application through the
library's notification log; ``rebuild`` empties it and replays from the first
event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import singledispatchmethod
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder

from ledger.application.trial_ledger import TrialLedger
from ledger.storage.transcoder import MsgspecTranscoder

Row = tuple[str, int, bytes]
BATCH = 20_000


class TimelineSQL:
    """The view's statements, for either database (placeholder and schema differ)."""

    def __init__(self, table: str, placeholder: str, blob: str) -> None:
        p = placeholder
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {table} (participant TEXT NOT NULL, position BIGINT NOT NULL, "
            f"state {blob} NOT NULL, PRIMARY KEY (participant, position))"
        )
        self.insert = f"INSERT INTO {table} VALUES ({p},{p},{p})"
        self.clear = f"DELETE FROM {table}"
        self.select_all = f"SELECT participant, position, state FROM {table} ORDER BY participant, position"
        self.select_one = (
            f"SELECT participant, position, state FROM {table} WHERE participant = {p} ORDER BY position"
        )


class TimelineView:
    """Rows ``(participant, position, stored state)`` plus the projection's tracking."""

    sql: TimelineSQL
    clear_tracking: str
    datastore: Any

    def append(self, rows: Sequence[Row], tracking: Tracking) -> None:
        """Add rows and record the tracking position, in one transaction."""
        with self.datastore.transaction(commit=True) as cursor:
            if rows:
                cursor.executemany(self.sql.insert, rows)
            self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]

    def reset(self, application_name: str) -> None:
        """Empty the view and forget the position (before a rebuild)."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self.sql.clear)
            cursor.execute(self.clear_tracking, (application_name,))

    def rows(self, participant: str | None = None) -> Iterator[Row]:
        """Every row, by participant then ledger position (or one participant's)."""
        with self.datastore.transaction(commit=False) as cursor:
            if participant is None:
                cursor.execute(self.sql.select_all)
            else:
                cursor.execute(self.sql.select_one, (participant,))
            for row in cursor.fetchall():
                yield row["participant"], row["position"], bytes(row["state"])


class SQLiteTimelineView(TimelineView, SQLiteTrackingRecorder):
    sql = TimelineSQL("rm_timeline", "?", "BLOB")
    clear_tracking = "DELETE FROM tracking WHERE application_name = ?"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), self.sql.create]


def postgres_view_class() -> type[TimelineView]:
    """The PostgreSQL view, imported only when the store is PostgreSQL."""
    from eventsourcing.postgres import PostgresTrackingRecorder
    from psycopg.sql import SQL

    class PostgresTimelineView(TimelineView, PostgresTrackingRecorder):
        def __init__(self, datastore: Any, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            schema = f'"{self.datastore.schema}"'
            self.sql = TimelineSQL(f"{schema}.rm_timeline", "%s", "BYTEA")
            self.clear_tracking = (
                f"DELETE FROM {schema}.{self.tracking_table_name} WHERE application_name = %s"
            )
            self.sql_create_statements.append(SQL(self.sql.create))  # type: ignore[arg-type]

    return PostgresTimelineView


class ParticipantTimelines(Projection[TimelineView]):
    """Projects the ledger's events into per-participant timelines."""

    name = "participant_timelines"
    _encode = MsgspecTranscoder().encode

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One domain event, as the library's projection runner delivers them."""
        state = self._encode({"timestamp": domain_event.timestamp, "record": domain_event.record})
        self.view.append([(domain_event.originator_id, tracking.notification_id, state)], tracking)


def open_view(ledger: TrialLedger) -> TimelineView:
    """The view in the ledger's own database (SQLite file or PostgreSQL schema)."""
    view_class: Any = SQLiteTimelineView if not ledger.store.startswith("postgres") else postgres_view_class()
    return ledger.factory.tracking_recorder(view_class)  # type: ignore[no-any-return]


def catch_up(
    ledger: TrialLedger,
    view: TimelineView,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> int:
    """Apply every notification after the view's tracked position; the number applied."""
    applied = 0
    while True:
        position = view.max_tracking_id(ledger.name) or 0  # type: ignore[attr-defined]
        notifications = ledger.notification_log.select(start=position + 1, limit=batch)
        if not notifications:
            return applied
        rows = [(str(n.originator_id), n.id, n.state) for n in notifications]
        tracking = Tracking(notification_id=notifications[-1].id, application_name=ledger.name)
        try:
            view.append(rows, tracking)
        except IntegrityError:
            # Another process caught up over the same rows first: read its position.
            continue
        applied += len(rows)
        if progress is not None:
            progress(len(rows))


def rebuild(ledger: TrialLedger, view: TimelineView, progress: Callable[[int], None] | None = None) -> int:
    """Empty the view and replay the whole ledger into it."""
    view.reset(ledger.name)
    return catch_up(ledger, view, progress)
