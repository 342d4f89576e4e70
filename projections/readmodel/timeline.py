"""The participant timelines read model: a tracked, restartable projection (SPEC section 4).

Status and endpoints depend on two times chosen at query time (``--as-of`` and
``--known-at``), so what is worth persisting is each participant's stored
events, grouped by participant and kept in ledger order, each with the time the
ledger recorded it: any as-of date and any known-at moment can then be answered
from it (:mod:`projections.readmodel.queries`).

The projection follows the application through the library's notification log
and writes into a tracking recorder (:mod:`ledger.storage.timelines`): every
batch of rows goes in the same transaction as the tracking record of the last
notification it covers, so a projection killed mid-way restarts exactly where it
stopped and never applies an event twice.  ``rebuild`` empties it and replays
from the first event.

The read model is checked, not trusted (issue 11 item 8).  Each notification
becomes exactly one row keyed by its position, so a sound view tracked at
position P holds one row for each of the ledger's events up to P and none after
it, and P is not beyond the ledger.  :func:`catch_up` checks that with one
statement (two counts and three maxima over indexed columns, one snapshot)
before it applies anything, and refuses to go on otherwise
(:class:`ReadModelDamaged`, exit 2 saying to run ``rebuild``); every round of
the catch-up then advances the tracked position or stops, so it ends.  A row
that does not decode is refused where it is read.  What the counts cannot see,
a row altered into another well-formed row, is what
:func:`projections.readmodel.check.check_read_model` (run by ``verify``) finds,
row against event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import singledispatchmethod
from typing import Any

import msgspec
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection

from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput
from ledger.storage.timelines import (
    Row,
    RowUnreadable,
    Shape,
    Timelines,
    TimelinesUnreadable,
    open_timelines,
    remake_timelines,
)
from ledger.storage.transcoder import MsgspecTranscoder, StoredState, decode_state

BATCH = 20_000
REBUILD = "run `trial-ledger rebuild`"


class ReadModelDamaged(InvalidInput):
    """The read model is not what the events make it: exit 2, one line naming the damage (issue 11)."""

    def __init__(self, damage: str) -> None:
        super().__init__(f"read model: {damage}; {REBUILD}")


class ParticipantTimelines(Projection[Any]):
    """Projects the ledger's events into per-participant timelines."""

    name = "participant_timelines"
    _encode = MsgspecTranscoder().encode

    def __init__(self, view: Timelines) -> None:
        super().__init__(view)
        self.timelines = view

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """One domain event, as the library's projection runner delivers them."""
        state = self._encode({"timestamp": domain_event.timestamp, "record": domain_event.record})
        self.timelines.append([(domain_event.originator_id, tracking.notification_id, state)], tracking)

    def process_notifications(self, ledger: TrialLedger, after: int, batch: int) -> int:
        """Apply up to ``batch`` notifications after position ``after``; the position reached."""
        notifications = ledger.notification_log.select(start=after + 1, limit=batch)
        if not notifications:
            return after
        rows = [(str(n.originator_id), n.id, ledger.codec.plain(n.state)) for n in notifications]
        tracking = Tracking(notification_id=notifications[-1].id, application_name=ledger.name)
        self.timelines.append(rows, tracking)
        return tracking.notification_id


def open_view(ledger: TrialLedger) -> Timelines:
    """The view in the ledger's own database (SQLite file or PostgreSQL schema)."""
    try:
        return open_timelines(ledger.factory, ledger.store, ledger.recorder.events_table_name)
    except TimelinesUnreadable as exc:
        raise ReadModelDamaged(f"its tables cannot be opened ({exc})") from exc


def shape(ledger: TrialLedger, view: Timelines) -> Shape:
    """The view's row count, highest row position and tracked position."""
    try:
        return view.shape(ledger.name)
    except TimelinesUnreadable as exc:
        raise ReadModelDamaged(f"its tables cannot be read ({exc})") from exc


def damage(found: Shape) -> str | None:
    """What is wrong with a view of this shape (None when sound)."""
    if found.tracked > found.size:
        return f"tracked at position {found.tracked}, beyond the ledger's {found.size} events"
    if found.last > found.tracked:
        return f"a row at position {found.last}, beyond the tracked position {found.tracked}"
    if found.held != found.covered:
        return f"{found.held} rows for the {found.covered} events it tracks"
    return None


def catch_up(
    ledger: TrialLedger,
    view: Timelines,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> int:
    """Check the view, then apply every notification after its tracked position; the number applied.

    Every round either advances the tracked position or stops, so this ends.
    """
    found = shape(ledger, view)
    problem = damage(found)
    if problem is not None:
        raise ReadModelDamaged(problem)
    projection = ParticipantTimelines(view)
    position = start = found.tracked
    while True:
        try:
            reached = projection.process_notifications(ledger, position, batch)
        except IntegrityError as exc:
            # Another process caught up over the same rows first: go on from its position.
            reached = shape(ledger, view).tracked
            if reached <= position:
                uncovered = f"rows after position {position} that its tracking does not cover"
                raise ReadModelDamaged(uncovered) from exc
        if reached == position:
            return position - start
        if progress is not None:
            progress(reached - position)
        position = reached


def rebuild(ledger: TrialLedger, progress: Callable[[int], None] | None = None) -> int:
    """Make the view anew, whatever was done to its tables, and replay the whole ledger into it."""
    try:
        view = remake_timelines(ledger.factory, ledger.store, ledger.recorder.events_table_name)
    except TimelinesUnreadable as exc:
        raise ReadModelDamaged(f"its tables cannot be made again ({exc})") from exc
    return catch_up(ledger, view, progress)


def read_state(row: Row) -> StoredState:
    """The stored state of one row; a row that does not decode is damage (exit 2)."""
    try:
        return decode_state(row[2])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ReadModelDamaged(f"the row of {row[0]} at position {row[1]} does not decode") from exc


def read_rows(view: Timelines, participant: str | None = None) -> Iterator[Row]:
    """The view's rows (see :meth:`Timelines.rows`), damage reported as :class:`ReadModelDamaged`."""
    try:
        yield from view.rows(participant)
    except TimelinesUnreadable as exc:
        raise ReadModelDamaged(f"its tables cannot be read ({exc})") from exc
    except RowUnreadable as exc:
        raise ReadModelDamaged(str(exc)) from exc
