"""The participant timelines read model: kept by the writes, checked on every read (SPEC section 4).

Status and endpoints depend on two times chosen at query time (``--as-of`` and
``--known-at``), so what is worth persisting is each participant's stored
events, grouped by participant and kept in ledger order, each with the time the
ledger recorded it: any as-of date and any known-at moment can then be answered
from it (:mod:`projections.readmodel.queries`).

Reads never write (issue 12 item 4, issue 14).  The rows are added by the write
itself, in the events' transaction (:mod:`ledger.storage.feed`), so a read finds
the view current and only reads.  A view that lags the ledger (a store written
by an earlier version, a missing view, a rebuild under way) is not refused and
not caught up by the read: :class:`CurrentTimelines` reads the view's rows up to
its tracked position and the events after it straight from the events table, in
the same order, and merges the two; ``rebuild`` (a write command) makes the view
whole again.

The read model is checked, not trusted (issue 11 item 8).  Each event becomes
exactly one row keyed by its position, so a sound view tracked at position P
holds one row for each of the ledger's events up to P and none after it, and P
is not beyond the ledger.  Every read checks that with one statement (two counts
and three maxima over indexed columns, one snapshot) and refuses to go on
otherwise (:class:`ReadModelDamaged`, exit 2 saying to run ``rebuild``).  A row
that does not decode is refused where it is read.  What the counts cannot see, a
row altered into another well-formed row, is what
:func:`projections.readmodel.check.check_read_model` (run by ``verify``) finds,
row against event.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Iterator

import msgspec
from eventsourcing.persistence import IntegrityError

from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput
from ledger.domain.rules.versions import ProtocolVersions
from ledger.domain.summary import Standing
from ledger.storage.summaries import micros, standing_at
from ledger.storage.timelines import (
    Row,
    RowUnreadable,
    Shape,
    SummaryShape,
    Timelines,
    TimelinesUnreadable,
    open_timelines,
)
from ledger.storage.transcoder import StoredState, decode_state
from projections.readmodel.summaries import rebuild_summaries

BATCH = 20_000
REBUILD = "run `trial-ledger rebuild`"


class ReadModelDamaged(InvalidInput):
    """The read model is not what the events make it: exit 2, one line naming the damage (issue 11)."""

    def __init__(self, damage: str) -> None:
        super().__init__(f"read model: {damage}; {REBUILD}")


def open_view(ledger: TrialLedger) -> Timelines:
    """The view in the ledger's own database (SQLite file or PostgreSQL schema); nothing is created."""
    return open_timelines(ledger.recorder, ledger.store)


def shape(view: Timelines) -> Shape | None:
    """The view's row count, highest row position and tracked position (None: the view has no tracking)."""
    try:
        return view.shape()
    except TimelinesUnreadable as exc:
        raise ReadModelDamaged(f"its tables cannot be opened ({exc})") from exc


def damage(found: Shape) -> str | None:
    """What is wrong with a view of this shape (None when sound)."""
    if found.tracked > found.size:
        return f"tracked at position {found.tracked}, beyond the ledger's {found.size} events"
    if found.last > found.tracked:
        return f"a row at position {found.last}, beyond the tracked position {found.tracked}"
    if found.held != found.covered:
        return f"{found.held} rows for the {found.covered} events it tracks"
    return None


def summary_damage(found: SummaryShape, timelines: Shape | None) -> str | None:
    """What is wrong with summaries of this shape beside timelines of that one (None when sound)."""
    tracked = 0 if timelines is None else timelines.tracked
    if found.tracked > tracked:
        return f"summaries at position {found.tracked}, beyond the timelines' {tracked}"
    if found.last > found.tracked:
        return f"a summary at position {found.last}, beyond the summarised position {found.tracked}"
    if found.rows != found.counted:
        return f"{found.rows} summaries where its batches added {found.counted}"
    return None


class CurrentTimelines:
    """The timelines as the ledger holds them now, read without writing anything.

    The view's rows up to its tracked position, checked first, and after it the
    events the view does not cover yet, deciphered in memory; and the
    participants' summaries, checked too, when they cover the whole ledger.
    """

    def __init__(self, ledger: TrialLedger) -> None:
        self.view = open_view(ledger)
        self.plain = ledger.codec.plain
        found = shape(self.view)
        if found is not None:
            problem = damage(found)
            if problem is not None:
                raise ReadModelDamaged(problem)
        # Without tracking the view covers nothing: rows an earlier version left are not read.
        # A sound view without rows may have no table either (dropped): nothing to page through.
        self.tracked = 0 if found is None else found.tracked
        self.covers = found is not None and found.held > 0
        self.behind = found is None or found.size > found.tracked
        try:
            # Summaries are of the timelines: beside a view that covers nothing they are not read.
            summarised = self.view.summary_shape() if self.tracked else None
        except TimelinesUnreadable as exc:
            raise ReadModelDamaged(f"its summaries cannot be opened ({exc})") from exc
        if summarised is not None:
            problem = summary_damage(summarised, found)
            if problem is not None:
                raise ReadModelDamaged(problem)
        # The summaries answer only when they cover every event: else a replay does.
        self.summarised = summarised is not None and not self.behind and summarised.tracked == self.tracked

    def standings(
        self,
        as_of: dt.date,
        known_at: dt.datetime | None,
        versions: ProtocolVersions,
        participant: str | None = None,
    ) -> list[Standing] | None:
        """Each participant's standing on ``as_of`` as known at ``known_at`` (or one's), from the summaries.

        Those not yet screened on ``as_of`` are left out.  None when a replay
        must answer: the summaries answer when they cover the whole ledger, when
        the events recorded by ``known_at`` are exactly those of the batches
        before some position (no batch recorded out of order straddles the
        moment), and when they were computed under the protocol versions known then.
        """
        if not self.summarised:
            return None
        try:
            if known_at is None:
                clock, exact = self.view.last_clock(), True
            else:
                clock, exact = self.view.clock_known(micros(known_at))
        except TimelinesUnreadable as exc:
            raise ReadModelDamaged(f"its clock cannot be read ({exc})") from exc
        if not exact or (clock is not None and clock.versions != versions.fingerprint):
            return None
        upto = clock.position if clock is not None else 0
        found = []
        try:
            for code, steps in self.view.summaries(upto, participant):
                try:
                    standing = standing_at(steps, as_of)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise ReadModelDamaged(
                        f"the summary of {code} at or before {upto} does not decode"
                    ) from exc
                if standing is not None:
                    found.append(standing)
        except TimelinesUnreadable as exc:
            raise ReadModelDamaged(f"its summaries cannot be read ({exc})") from exc
        except RowUnreadable as exc:
            raise ReadModelDamaged(str(exc)) from exc
        return found

    def rows(self, participant: str | None = None) -> Iterator[Row]:
        """Every row by participant then position (or one participant's), as the view would hold them."""
        tracked, plain = self.tracked, self.plain
        # Rows a writer adds after the check are beyond ``tracked``: the tail has those events.
        held = (row for row in read_rows(self.view, participant) if row[1] <= tracked) if self.covers else ()
        tail = ((code, position, plain(state)) for code, position, state in self._tail(participant))
        return heapq.merge(held, tail, key=lambda row: (row[0], row[1]))

    def _tail(self, participant: str | None) -> Iterator[Row]:
        if not self.behind:  # a current view: no need to look through the events at all
            return
        try:
            yield from self.view.tail(self.tracked, participant)
        except TimelinesUnreadable as exc:
            raise ReadModelDamaged(f"the events after it cannot be read ({exc})") from exc


def catch_up(
    ledger: TrialLedger,
    view: Timelines,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> int:
    """Check the view, then add the rows of every event after its tracked position; the number added.

    What ``rebuild`` runs after making the tables; every round either advances
    the tracked position or stops, so this ends.
    """
    found = shape(view)
    if found is None:
        raise ReadModelDamaged("its tracking table is missing")
    problem = damage(found)
    if problem is not None:
        raise ReadModelDamaged(problem)
    position = start = found.tracked
    while True:
        try:
            reached = _apply(ledger, view, position, batch)
        except IntegrityError as exc:
            # A writer added the same rows first (the feed, once the view is current): go on from there.
            again = shape(view)
            reached = 0 if again is None else again.tracked
            if reached <= position:
                uncovered = f"rows after position {position} that its tracking does not cover"
                raise ReadModelDamaged(uncovered) from exc
        if reached == position:
            return position - start
        if progress is not None:
            progress(reached - position)
        position = reached


def _apply(ledger: TrialLedger, view: Timelines, after: int, batch: int) -> int:
    """Add the rows of up to ``batch`` events after position ``after``; the position reached."""
    notifications = ledger.notification_log.select(start=after + 1, limit=batch)
    if not notifications:
        return after
    rows = [(str(n.originator_id), n.id, ledger.codec.plain(n.state)) for n in notifications]
    view.append(rows, notifications[-1].id)
    return notifications[-1].id


def rebuild(
    ledger: TrialLedger,
    progress: Callable[[int], None] | None = None,
    summarising: Callable[[int], None] | None = None,
) -> int:
    """Make the view anew, whatever was done to its tables, and add the whole ledger to it.

    The timelines first (``progress`` told of the events added), then every
    participant's summaries from them (``summarising`` told of the events
    summarised).  Returns the number of events the timelines took.
    """
    view = open_view(ledger)
    view.remake()
    added = catch_up(ledger, view, progress)
    rebuild_summaries(view, ledger.recorder.feed.writer.configured(), summarising)  # type: ignore[attr-defined]
    return added


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
