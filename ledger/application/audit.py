"""The audit trail: every event and correction in recorded order (SPEC section 5, ``audit``).

Read straight from the stored events (never from a read model), in ledger
order.  Each row says who (``user``), where (``site``), when the ledger stored
it (``recorded_at``, UTC), the clinical date (``effective``) and what it did:

- an event (``kind: "event"``): its ``values``; ``status`` is ``current``,
  ``corrected`` (``corrected_by`` lists the corrections) or ``voided``
  (``voided_by`` says who voided it, when and why).  Voided events are shown,
  marked, never hidden.  A refused enrollment (``EnrollmentRefused``) shows the
  failed criteria as its reason;
- a correction (``kind: "correction"``): for each changed field, the target's
  value just before this correction (after the corrections recorded before
  it) and the new value, and the mandatory reason;
- a void (``kind: "void"``): the voided event, its type and the reason;
- an adverse-event coding (``kind: "coding"``, issue 15): the coding as
  ``values``, and in ``changes`` each code and term with the value of the AE's
  coding before it (``old`` null for the first coding): recoding shows the old
  and the new codes.

The replay covers every event recorded by ``known_at`` (all by default), so
old values are right whatever the filters; the filters (participant, site,
user, recorded_at range) only choose which rows are shown.  A correction or
void recorded after ``known_at`` is not known yet: the event shows as it was
then.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from ledger.application.access import LOG_STREAMS
from ledger.application.access import Refusals as _Refusals
from ledger.application.access import Trial as _Trial
from ledger.domain.entry import Entry
from ledger.domain.errors import InvalidInput
from ledger.domain.events import (
    CODING_FIELDS,
    ActionRefused,
    AdverseEventCoded,
    EnrollmentRefused,
    EventCorrected,
    EventVoided,
    InvalidRecord,
    ParticipantEnrolled,
    Record,
)
from ledger.domain.rules.corrections import corrected
from ledger.domain.rules.sites import site_of
from ledger.domain.text import printable

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

TRIAL_STREAM = _Trial.STREAM
# The trial-level streams a participant's audit also reads: the lock, and refused
# attempts (recorded in ``TRIAL`` by older versions, in ``REFUSALS`` since issue 12).
_TRIAL_LEVEL = (TRIAL_STREAM, _Refusals.STREAM)
# Shown as columns of their own, not among an event's values.
_COLUMNS = frozenset({"type", "id", "user", "site", "participant", "effective", "entered_at"})


@dataclass(frozen=True)
class Filters:
    """Which rows to show (SPEC section 5; ``audit`` options).

    ``site`` keeps the rows of that site's participants and the rows entered by
    that site; ``since`` and ``until`` bound ``recorded_at`` (inclusive);
    ``known_at`` limits the replay itself.
    """

    participant: str | None = None
    site: str | None = None
    user: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    known_at: dt.datetime | None = None

    def keeps(self, row: Row) -> bool:
        return (
            (self.participant is None or row.participant == self.participant)
            and (self.site is None or self.site in (row.site, _site_of(row.participant)))
            and (self.user is None or row.user == self.user)
            and (self.since is None or row.recorded_at >= self.since)
            and (self.until is None or row.recorded_at <= self.until)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "participant": self.participant,
            "site": self.site,
            "user": self.user,
            "since": _instant(self.since),
            "until": _instant(self.until),
            "known_at": _instant(self.known_at),
        }


@dataclass(frozen=True)
class Change:
    """One field a correction changed: its value before and after."""

    field: str
    old: Any
    new: Any


@dataclass
class Row:
    """One stored event as the audit trail shows it.

    ``stream`` is the stream that holds it: a participant's, or the ledger's own
    ``TRIAL`` (lock, unlock, refused attempts) and ``USERS`` streams;
    ``participant`` is the participant it concerns, if any.
    """

    position: int
    recorded_at: dt.datetime
    event_id: str
    type: str
    participant: str | None
    stream: str
    site: str | None
    user: str | None
    effective: dt.date | None
    entered_at: dt.datetime | None
    kind: str
    target: str | None = None
    target_type: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    reason: str | None = None
    status: str = "current"
    corrected_by: list[str] = field(default_factory=list)
    voided_by: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "recorded_at": _instant(self.recorded_at),
            "event_id": self.event_id,
            "type": self.type,
            "kind": self.kind,
            "participant": self.participant,
            "stream": self.stream,
            "site": self.site,
            "user": self.user,
            "effective": None if self.effective is None else self.effective.isoformat(),
            "entered_at": _instant(self.entered_at),
            "target": self.target,
            "target_type": self.target_type,
            "values": self.values,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in self.changes],
            "reason": self.reason,
            "status": self.status,
            "corrected_by": self.corrected_by,
            "voided_by": self.voided_by,
        }


def trail(entries: Iterable[Entry], filters: Filters | None = None) -> list[Row]:
    """The audit rows of ``entries`` (in ledger order) that ``filters`` keep."""
    filters = filters or Filters()
    current: dict[str, Record] = {}  # every clinical event's values as corrected so far
    codings: dict[tuple[str, str], AdverseEventCoded] = {}  # the latest coding of each AE
    shown: dict[str, Row] = {}  # rows kept, by event id, to mark later corrections and voids
    rows: list[Row] = []
    for entry in entries:
        if filters.known_at is not None and entry.recorded_at > filters.known_at:
            continue
        row = _row(entry, current, codings)
        if filters.keeps(row):
            rows.append(row)
            shown[row.event_id] = row
        if row.target is not None and row.target in shown:
            _mark(shown[row.target], row)
    return rows


def _row(entry: Entry, current: dict[str, Record], codings: dict[tuple[str, str], AdverseEventCoded]) -> Row:
    """The row of one entry; updates ``current`` and ``codings`` with what it does."""
    record = entry.record
    event_id = record.id or f"{entry.participant}#?"
    participant = getattr(record, "participant", None) or (
        None if entry.participant in LOG_STREAMS else entry.participant
    )
    row = Row(
        position=entry.position,
        recorded_at=entry.recorded_at,
        event_id=event_id,
        type=record.type,
        participant=participant,
        site=record.site or _site_of(participant),
        stream=entry.participant,
        user=record.user,
        effective=getattr(record, "effective", None),
        entered_at=record.entered_at,
        kind="event",
    )
    if isinstance(record, EventCorrected | EventVoided):
        target = current.get(record.target)
        row.target, row.reason = record.target, record.reason
        row.target_type = None if target is None else target.type
        row.effective = getattr(target, "effective", None)
        row.status = "applied" if target is not None else "unknown target"
        if isinstance(record, EventVoided):
            row.kind = "void"
            current.pop(record.target, None)
        else:
            row.kind = "correction"
            row.changes, corrected = _changes(target, record.changes)
            if corrected is not None:
                current[record.target] = corrected
                row.effective = getattr(corrected, "effective", None)
            elif target is not None:
                row.status = "invalid, not applied"
        return row
    current[event_id] = record
    row.values = {k: v for k, v in _fields(record).items() if k not in _COLUMNS and v is not None}
    row.reason = _reason(record)
    if isinstance(record, AdverseEventCoded):
        row.kind = "coding"
        before = codings.get((record.participant, record.ae_id))
        row.changes = [
            Change(name, None if before is None else getattr(before, name), getattr(record, name))
            for name in CODING_FIELDS
            if before is None or getattr(before, name) != getattr(record, name)
        ]
        codings[(record.participant, record.ae_id)] = record
    return row


def _changes(target: Record | None, changes: dict[str, Any]) -> tuple[list[Change], Record | None]:
    """Old and new value of each changed field, and the target as corrected (None if unknown)."""
    if target is None:
        return [Change(name, None, value) for name, value in changes.items()], None
    before = _fields(target)
    try:
        changed = corrected(target, changes, stored=True)
    except InvalidRecord:  # the ledger refuses these; show what was asked
        return [Change(name, before.get(name), value) for name, value in changes.items()], None
    after = _fields(changed)
    return [Change(name, before.get(name), after.get(name, changes[name])) for name in changes], changed


def _fields(record: Record) -> dict[str, Any]:
    """Every field of a record as JSON builtins, defaults included (dates as ISO strings)."""
    return {
        f.name: msgspec.to_builtins(getattr(record, f.name)) for f in msgspec.structs.fields(type(record))
    }


def _mark(target: Row, row: Row) -> None:
    """Record on the target's row that ``row`` corrected or voided it."""
    if row.kind == "void":
        target.status = "voided"
        target.voided_by = {
            "event_id": row.event_id,
            "position": row.position,
            "recorded_at": _instant(row.recorded_at),
            "user": row.user,
            "reason": row.reason,
        }
    elif row.kind == "correction":
        target.corrected_by.append(row.event_id)
        if target.status == "current":
            target.status = "corrected"


def _reason(record: Record) -> str | None:
    """The reason an event carries in itself, if any (a withdrawal's, a lock's, a refusal's...)."""
    if isinstance(record, EnrollmentRefused):
        return "not eligible: " + "; ".join(record.criteria)
    if isinstance(record, ActionRefused):
        return f"refused {record.action}: {record.reason}"
    if isinstance(record, ParticipantEnrolled) and record.deviation:
        return f"deviation: {record.deviation}"
    reason = getattr(record, "reason", None)
    return reason if isinstance(reason, str) else None


def _site_of(participant: str | None) -> str | None:
    return None if participant is None else site_of(participant)


def _instant(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def ledger_trail(ledger: TrialLedger, filters: Filters | None = None) -> list[Row]:
    """The audit trail of a ledger: one participant's stream, or the whole trial."""
    filters = filters or Filters()
    return trail(_entries(ledger, filters), filters)


def _entries(ledger: TrialLedger, filters: Filters) -> Iterator[Entry]:
    """The stored events to replay, read in one snapshot, decoded one at a time."""
    from ledger.storage.scan import snapshot

    decode = ledger.codec.decode
    with snapshot(ledger) as snap:
        if filters.participant is None:
            for position, stream, state in snap.events():
                stored = decode(state)
                yield Entry(position, stored.timestamp, stream, stored.record)
            return
        # Corrections and voids are events of the stream they amend (ledger.domain.participant),
        # so one participant's stream holds everything its rows need; the refused
        # attempts that concern the participant are in the trial-level streams.
        rows = [
            (position, filters.participant, state)
            for position, state in snap.participant_events(filters.participant)
        ]
        if not rows:
            raise InvalidInput(f"participant: no events of {filters.participant} in the ledger")
        for stream in _TRIAL_LEVEL:
            rows += [(position, stream, state) for position, state in snap.participant_events(stream)]
    for position, stream, state in sorted(rows, key=lambda row: row[0]):
        stored = decode(state)
        yield Entry(position, stored.timestamp, stream, stored.record)


def to_json(rows: list[Row], filters: Filters) -> dict[str, Any]:
    """``audit --json``: ``{"participant", "known_at", "filters", "count", "entries": [...]}``."""
    return {
        "participant": filters.participant,
        "known_at": _instant(filters.known_at),
        "filters": filters.to_json(),
        "count": len(rows),
        "entries": [row.to_json() for row in rows],
    }


def table(rows: list[Row], filters: Filters) -> Any:
    """The trail as a rich table for people (rich is imported here: only this output needs it)."""
    from rich.table import Table
    from rich.text import Text

    title = "Audit trail" + (f" of {filters.participant}" if filters.participant else " of the trial")
    if filters.known_at is not None:
        title += f" as known at {_instant(filters.known_at)}"
    grid = Table(
        title=Text(printable(title)),
        show_lines=True,
        caption=f"{len(rows)} row{'' if len(rows) == 1 else 's'}",
    )
    grid.add_column("#", justify="right", no_wrap=True)
    grid.add_column("Recorded\n(UTC)", overflow="fold")
    grid.add_column("Effective", overflow="fold")
    grid.add_column("Event", overflow="fold")
    grid.add_column("What and why", ratio=1, overflow="fold")
    for row in rows:
        by_whom = f"by {row.user or '?'} ({row.site or '?'})"
        event = Text(printable(f"{row.type}\n{row.event_id}\n{row.participant or row.stream}\n{by_whom}"))
        what = Text(printable(_what(row)))
        if row.reason:
            what.append(printable(f"\nreason: {row.reason}"), style="italic")
        if row.status == "voided" and row.voided_by is not None:
            event.append("\nVOIDED", style="bold red")
            by = row.voided_by
            what.append(
                printable(f"\nVOIDED by {by['event_id']} ({by['user']}, {by['recorded_at']}): {by['reason']}")
            )
        elif row.status == "corrected":
            event.append("\ncorrected", style="yellow")
            what.append(printable("\ncorrected by " + ", ".join(row.corrected_by)))
        grid.add_row(
            str(row.position),
            (_instant(row.recorded_at) or "").replace("T", "\n"),
            "" if row.effective is None else row.effective.isoformat(),
            event,
            what,
            style="dim" if row.status == "voided" else None,
        )
    return grid


def _what(row: Row) -> str:
    if row.kind == "correction":
        lines = [f"corrects {row.target} ({row.target_type or 'unknown'})"]
        lines += [f"{c.field}: {_show(c.old)} -> {_show(c.new)}" for c in row.changes]
        return "\n".join(lines)
    if row.kind == "void":
        return f"voids {row.target} ({row.target_type or 'unknown'})"
    if row.kind == "coding":
        verb = "codes" if all(c.old is None for c in row.changes) else "recodes"
        lines = [f"{verb} AE {row.values['ae_id']} ({_show(row.values['verbatim'])})"]
        lines += [f"{c.field}: {_show(c.old)} -> {_show(c.new)}" for c in row.changes]
        return "\n".join(lines)
    return ", ".join(f"{k}={_show(v)}" for k, v in row.values.items())


def _show(value: Any) -> str:
    """A value, short enough for a table cell (the JSON output has it whole)."""
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return f"[{len(value)} items]" if len(value) > 4 else "[" + ", ".join(map(_show, value)) + "]"
    text = str(value)
    return text if len(text) <= 48 else text[:20] + "..." + text[-8:]
