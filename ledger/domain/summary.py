"""Each participant as a step function of the as-of date: what the read model keeps (issue 14).

``status`` and ``endpoints`` take two times (SPEC section 4).  The known-at
moment chooses which stored events count; among them, a participant's status
row and what they add to the endpoints depend on the as-of date only through
the events effective by then and the study days counted from day 1, so they
change only on the dates of
:func:`~ledger.domain.rules.status.status_changes`.  A :data:`Summary` lists a
participant's :class:`Standing` from each such date on; the read model keeps
one per participant for every batch of events that changed it, so that any
(as-of, known-at) pair is a lookup: the summary of the last batch recorded by
the known-at moment, and in it the last step on or before the as-of date.

Every answer here comes from the rule functions themselves
(:func:`~ledger.domain.rules.endpoints.judged`,
:func:`~ledger.domain.rules.endpoints.contribution`): a summary only tabulates
them on the dates where they may change.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Sequence
from typing import Protocol, TypeVar

import msgspec

from ledger.domain.entry import Entry
from ledger.domain.events import ClinicalRecord, EventCorrected, EventVoided
from ledger.domain.rules.corrections import ParticipantHistory
from ledger.domain.rules.endpoints import Contribution, contribution, judged
from ledger.domain.rules.status import StatusRow, status_changes
from ledger.domain.rules.versions import ProtocolVersions


class Standing(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A participant on one as-of date: their ``status`` row, judging version and endpoint contribution.

    ``version`` is the judging version's place among the adopted versions
    (:meth:`~ledger.domain.rules.versions.ProtocolVersions.index`).
    """

    status: StatusRow
    version: int
    contribution: Contribution


class Step(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """From ``since`` on (until the next step) the participant stands so; None: not screened by then."""

    since: dt.date
    standing: Standing | None


Summary = tuple[Step, ...]
S_co = TypeVar("S_co", covariant=True)


def standing(history: ParticipantHistory, as_of: dt.date, versions: ProtocolVersions) -> Standing | None:
    """The participant on ``as_of`` as ``status`` and ``endpoints`` see them; None before their screening."""
    rows = judged([history], as_of, versions)
    if not rows:
        return None
    row = rows[0]
    return Standing(row.status.row, versions.index(row.version), contribution(row, as_of))


def summary_of(
    history: ParticipantHistory,
    versions: ProtocolVersions,
    kept: Summary = (),
    since: dt.date | None = None,
) -> Summary:
    """The participant's steps: their :func:`standing` from every date on which it may change.

    With ``kept`` (the summary before some events changed) and ``since`` (the
    earliest clinical date those events touch, :func:`touched_since`), the
    steps before ``since`` are kept as they were, since nothing before it
    changed, and only the dates from ``since`` on are evaluated again.
    Consecutive steps that stand alike are one step.
    """
    protocols = {id(v.protocol): v.protocol for v in versions.adopted}.values()
    dates = set().union(*(status_changes(history, protocol) for protocol in protocols))
    steps: list[Step] = []
    if since is not None:
        steps = [step for step in kept if step.since < since]
        dates = {date for date in dates if date > since} | {since}
    for date in sorted(dates):
        found = standing(history, date, versions)
        if (steps[-1].standing if steps else None) != found:
            steps.append(Step(date, found))
    return tuple(steps)


def touched_since(entries: Sequence[Entry], first: int) -> dt.date | None:
    """The earliest clinical date the participant's entries from position ``first`` on may change.

    ``entries``: all of the participant's stored entries, in ledger order.  A
    clinical event changes them from its own date on; a correction or a void
    from the earliest date its target has held (the original's date, and every
    date a correction gave it), and a void of a correction from the earliest
    date of that correction's target.  A signature or a coding changes nothing
    a summary holds.  None: nothing from ``first`` on touches a clinical date.
    """
    held: dict[str, list[dt.date]] = {}
    corrects: dict[str, str] = {}
    touched: list[dt.date] = []
    for entry in entries:
        record = entry.record
        if isinstance(record, ClinicalRecord):
            held.setdefault(record.id or "", []).append(record.effective)
            if entry.position >= first:
                touched.append(record.effective)
        elif isinstance(record, EventCorrected | EventVoided):
            target = corrects.get(record.target, record.target)
            if isinstance(record, EventCorrected):
                corrects[record.id or ""] = record.target
                moved = _date(record.changes.get("effective"))
                if moved is not None:
                    held.setdefault(record.target, []).append(moved)
            if entry.position >= first:
                touched.extend(held.get(target, ()))
    return min(touched, default=None)


def _date(value: object) -> dt.date | None:
    """A date a correction gives its target, as stored (ISO text); None when it gives none that reads."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


class Stepped(Protocol[S_co]):
    """A step as a lookup needs it: where it starts, and what it holds (decoded or not)."""

    @property
    def since(self) -> dt.date: ...

    @property
    def standing(self) -> S_co: ...


def standing_on(summary: Sequence[Stepped[S_co]], as_of: dt.date) -> S_co | None:
    """The participant on ``as_of``: the last step on or before it (None before the first)."""
    index = bisect_right([step.since for step in summary], as_of)
    return summary[index - 1].standing if index else None
