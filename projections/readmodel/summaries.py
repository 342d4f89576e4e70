"""The participants' summaries made again from the events, and checked against them (issue 14).

The write side adds each batch's summaries in its own transaction
(:mod:`ledger.storage.summaries`).  ``rebuild`` makes them all again: it cuts
the ledger into batches, a batch being a run of events recorded at one
instant, and computes each participant's summary at the end of every batch
that changed it (:func:`rebuild_summaries`).  ``verify`` computes them again at
the ends of the batches the stored clock names, and names the first stored
clock row or summary that is not what the events make (:func:`check_summaries`).

Both go participant by participant, so memory holds one participant's events,
the list of batches and one page of rows at a time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import NamedTuple

import msgspec

from ledger.domain.entry import Entry
from ledger.domain.events import ProtocolAdopted
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.versions import AdoptedProtocol, ProtocolVersions, judging_versions
from ledger.domain.summary import Summary, summary_of, touched_since
from ledger.storage.summaries import (
    PROTOCOL_STREAM,
    ClockRow,
    decode_summary,
    encode_summary,
    recorded_micros,
)
from ledger.storage.timelines import Row, Timelines
from ledger.storage.transcoder import decode_state
from ledger.storage.workers import spread

PAGE = 5_000


@dataclass(frozen=True)
class Batches:
    """The batches of a ledger: each one's clock row (count left at 0) and the versions it judges under."""

    clock: list[ClockRow]
    versions: list[ProtocolVersions]

    def changes(self) -> list[int]:
        """The batches that judge under other versions than the batch before (the first included)."""
        clock = self.clock
        return [i for i, row in enumerate(clock) if i == 0 or row.versions != clock[i - 1].versions]


def batches(rows: Iterable[Row], configured: AdoptedProtocol, ends: Sequence[int] | None = None) -> Batches:
    """The batches of the timeline rows ``rows`` (in ledger order) and what their clock rows say.

    At ``ends`` when given (the stored clock's, for ``verify``; rows after the
    last are left out), else at every change of recorded time (``rebuild``).
    A clock row says what :class:`~ledger.storage.summaries.SummaryWriter` writes.
    """
    clock: list[ClockRow] = []
    versions: list[ProtocolVersions] = []
    adoptions: list[tuple[str, ProtocolAdopted]] = []
    judging = judging_versions(adoptions, configured)
    bounds = iter(ends) if ends is not None else None
    end = next(bounds, None) if bounds is not None else None
    low: int | None = None
    high = 0
    last = 0

    def close() -> None:
        nonlocal low
        assert low is not None
        before = clock[-1].high if clock else low
        early = low if low < max(high, before) else None
        clock.append(ClockRow(last, high, max(high, before), early, judging.fingerprint, 0))
        versions.append(judging)
        low = None

    for stream, position, state in rows:
        if bounds is not None and end is None:
            break
        moment = recorded_micros(state)
        if bounds is None and low is not None and moment != high:
            close()
        if stream == PROTOCOL_STREAM:
            record = decode_state(state).record
            if isinstance(record, ProtocolAdopted):
                adoptions.append((record.id or f"{PROTOCOL_STREAM}#{position}", record))
                judging = judging_versions(adoptions, configured)
        low, high = (moment, moment) if low is None else (min(low, moment), max(high, moment))
        last = position
        if position == end:
            close()
            end = next(bounds, None)  # type: ignore[arg-type]
    if bounds is None and low is not None:
        close()
    return Batches(clock, versions)


def participant_summaries(
    participant: str, entries: list[Entry], found: Batches, changes: list[int]
) -> Iterator[tuple[int, Summary]]:
    """The participant's summary at the end of each batch that changed it: (batch index, summary).

    A batch may change it when it holds some of their events, or judges under
    other protocol versions than the batch before.  The summary is computed
    again there (from the steps before the earliest date touched, when the
    versions are the same: :func:`~ledger.domain.summary.touched_since`), and
    given when it differs from the one before, as the write side does.
    """
    if not entries:
        return
    ends = [row.position for row in found.clock]
    touched = {bisect_left(ends, entry.position) for entry in entries}
    first = min(touched)
    kept: Summary = ()
    judged_under: str | None = None
    upto = 0
    for index in sorted(touched | {index for index in changes if index > first}):
        if index >= len(ends):
            return
        start = entries[upto].position if upto < len(entries) else ends[index] + 1
        while upto < len(entries) and entries[upto].position <= ends[index]:
            upto += 1
        history = fold(entries[:upto]).get(participant)
        if history is None:
            continue
        versions = found.versions[index]
        if versions.fingerprint != judged_under:
            summary = summary_of(history, versions)
        else:
            since = touched_since(entries[:upto], start)
            summary = kept if since is None else summary_of(history, versions, kept, since)
        if summary != kept:
            yield index, summary
            kept = summary
        judged_under = versions.fingerprint


class Made(NamedTuple):
    """One summary row the events make."""

    participant: str
    position: int
    batch: int
    summary: Summary


def made_rows(
    rows: Iterable[Row], found: Batches, progress: Callable[[int], None] | None = None
) -> Iterator[Made]:
    """The summary rows the events make, by participant then position.

    ``rows``: the timeline rows by participant then position; those after the
    last batch are left out.  Participants are summarised on every core when
    there are many (:func:`~ledger.storage.workers.spread`).  ``progress`` is
    told how many rows each participant had.
    """
    if not found.clock:
        return
    upto = found.clock[-1].position
    jobs = (
        (participant, [(position, state) for _, position, state in stream if position <= upto])
        for participant, stream in groupby(rows, key=lambda row: row[0])
    )
    shared = (found, found.changes())
    for participant, made, count in spread(_summarised, shared, jobs, _weight):
        for index, summary in made:
            yield Made(participant, found.clock[index].position, index, summary)
        if progress is not None:
            progress(count)


def _summarised(
    shared: tuple[Batches, list[int]], job: tuple[str, list[tuple[int, bytes]]]
) -> tuple[str, list[tuple[int, Summary]], int]:
    """One participant's summaries at the batches that changed them, and how many rows they had."""
    found, changes = shared
    participant, rows = job
    entries = []
    for position, state in rows:
        stored = decode_state(state)
        entries.append(Entry(position, stored.timestamp, participant, stored.record))
    return participant, list(participant_summaries(participant, entries, found, changes)), len(rows)


def _weight(job: tuple[str, list[tuple[int, bytes]]]) -> int:
    return len(job[1])


def rebuild_summaries(
    view: Timelines, configured: AdoptedProtocol, progress: Callable[[int], None] | None = None
) -> int:
    """Make every participant's summaries again from the view's rows (``rebuild``, after the timelines).

    The rows go in page by page; they count only once the clock rows that name
    them go in, in the last transaction, which also summarises what was
    appended meanwhile.  Returns the position the summaries reach.
    """
    found = batches(view.in_ledger_order(), configured)
    counts = [0] * len(found.clock)
    page: list[tuple[str, int, bytes]] = []
    for made in made_rows(view.rows(), found, progress):
        page.append((made.participant, made.position, encode_summary(made.summary)))
        counts[made.batch] += 1
        if len(page) >= PAGE:
            view.add_summaries(page)
            page = []
    if page:
        view.add_summaries(page)
    clock = [row._replace(summaries=count) for row, count in zip(found.clock, counts, strict=True)]
    return view.close_summaries(clock)


class SummaryDifference(NamedTuple):
    """The first difference between the stored summaries and the events: where and what."""

    participant: str | None
    position: int
    difference: str


def check_summaries(view: Timelines, configured: AdoptedProtocol) -> SummaryDifference | None:
    """The first stored clock row or summary that is not what the events make (None: all are).

    A view without its summaries (a store of an earlier version) claims none.
    """
    if view.summary_shape() is None:
        return None
    stored = view.clock()
    if not stored:
        return None
    found = batches(view.in_ledger_order(), configured, [row.position for row in stored])
    for index, row in enumerate(stored):
        if index >= len(found.clock) or row._replace(summaries=0) != found.clock[index]:
            return SummaryDifference(None, row.position, "its clock row is not what the events say")
    batch_of = {row.position: index for index, row in enumerate(stored)}
    counts = [0] * len(stored)
    made = made_rows(view.rows(), found)
    held = view.summary_rows()
    mine, theirs = next(made, None), next(held, None)
    while mine is not None or theirs is not None:
        if theirs is None or (mine is not None and (mine.participant, mine.position) < theirs[:2]):
            assert mine is not None
            return SummaryDifference(mine.participant, mine.position, "no summary where the events make one")
        if mine is None or theirs[:2] < (mine.participant, mine.position):
            return SummaryDifference(theirs[0], theirs[1], "a summary the events do not make")
        if _summary(theirs[2]) != mine.summary:
            return SummaryDifference(
                mine.participant, mine.position, "its summary is not what the events make"
            )
        counts[batch_of[mine.position]] += 1
        mine, theirs = next(made, None), next(held, None)
    for row, count in zip(stored, counts, strict=True):
        if row.summaries != count:
            return SummaryDifference(
                None, row.position, f"its clock row counts {row.summaries} summaries, not {count}"
            )
    return None


def _summary(steps: bytes) -> Summary | None:
    try:
        return decode_summary(steps)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
