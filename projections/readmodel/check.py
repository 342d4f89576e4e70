"""``verify``'s check of the read model against the events (issue 11 item 8, issue 14).

The read model is part of what the ledger asserts: ``status`` and ``endpoints``
answer from it.  :func:`check_read_model` walks the stored events and the view's
rows side by side, both in ledger order and page by page (bounded memory,
one pass), and names the first position where they differ.  Up to the view's
tracked position every event must have its row, with the same participant and
the same stored state; no row may lie beyond it, and it may not lie beyond the
ledger.  Events after the tracked position (a store written by an earlier
version, a rebuild under way) are not yet in the view, which is not damage:
queries read them from the events, and ``rebuild`` adds them.  A view without
its tracking table covers nothing and holds nothing to compare.

Then it makes every participant's summaries again from the rows it has just
found equal to the events, at the ends of the batches the stored clock names,
and names the first stored clock row or summary that differs
(:func:`~projections.readmodel.summaries.check_summaries`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import msgspec

from ledger.application.trial_ledger import TrialLedger
from ledger.storage.timelines import Row, RowUnreadable, TimelinesUnreadable
from ledger.storage.transcoder import decode_state
from projections.readmodel.summaries import check_summaries
from projections.readmodel.timeline import ReadModelDamaged, open_view

NAME = "read model"


@dataclass(frozen=True)
class ReadModelCheck:
    """The read model's verdict: ``ok``, else the first difference, where and what."""

    ok: bool
    participant: str | None = None
    position: int | None = None
    difference: str | None = None

    @property
    def text(self) -> str:
        """The first difference in one line (empty when ok)."""
        if self.ok:
            return ""
        where = f" at position {self.position}" if self.position is not None else ""
        who = f" ({self.participant})" if self.participant else ""
        return f"{NAME} differs from the events{where}{who}: {self.difference}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "participant": self.participant,
            "position": self.position,
            "difference": self.difference,
        }


def check_read_model(ledger: TrialLedger) -> ReadModelCheck:
    """The first difference between the participant timelines and the stored events, if any."""
    try:
        view = open_view(ledger)
        found = view.shape()
        if found is None:
            return ReadModelCheck(ok=True)
        tracked, size = found.tracked, found.size
        if tracked > size:
            difference = f"tracked at position {tracked}, beyond the ledger's {size} events"
            return ReadModelCheck(ok=False, difference=difference)
        events = _events(ledger)
        # A view with no rows may have no table either (dropped): nothing to page through.
        rows = view.in_ledger_order() if found.held else iter(())
        for event, row in zip_longest(_upto(events, tracked), rows):
            found = _difference(event, row, tracked)
            if found is not None:
                return found
        # The timelines are the events': the summaries made from them must be the stored ones
        # (beside timelines that cover nothing, summaries are not read).
        configured = ledger.recorder.feed.writer.configured()  # type: ignore[attr-defined]
        summaries = check_summaries(view, configured) if tracked else None
        if summaries is not None:
            return ReadModelCheck(False, summaries.participant, summaries.position, summaries.difference)
        return ReadModelCheck(ok=True)
    except (ReadModelDamaged, TimelinesUnreadable) as exc:
        return ReadModelCheck(ok=False, difference=str(exc).removeprefix("read model: "))
    except RowUnreadable as exc:
        position = exc.position if isinstance(exc.position, int) else None
        return ReadModelCheck(False, str(exc.participant), position, "the row is not readable")


def _events(ledger: TrialLedger, batch: int = 20_000) -> Iterator[Row]:
    """The stored events as rows ``(participant, position, state)``, page by page.

    The state as the view keeps it: deciphered and decompressed (:class:`ledger.storage.codec.Codec`).
    """
    scan = ledger.recorder.scan  # type: ignore[attr-defined]
    plain = ledger.codec.plain
    after = 0
    while True:
        page = scan(after, batch)
        for position, participant, state in page:
            yield str(participant), position, plain(bytes(state))
        if len(page) < batch:
            return
        after = page[-1][0]


def _upto(events: Iterator[Row], tracked: int) -> Iterator[Row]:
    for event in events:
        if event[1] > tracked:
            return
        yield event


def _difference(event: Row | None, row: Row | None, tracked: int) -> ReadModelCheck | None:
    """How one event and the row beside it differ; rows and events both come by position."""
    if event is not None and (row is None or row[1] > event[1]):
        return ReadModelCheck(False, event[0], event[1], "the event has no row in the read model")
    assert row is not None
    if event is None or row[1] < event[1]:
        beyond = "beyond the tracked position" if row[1] > tracked else "for no event"
        return ReadModelCheck(False, row[0], row[1], f"a row {beyond}")
    if row[0] != event[0]:
        return ReadModelCheck(False, event[0], event[1], f"the row names participant {row[0]}")
    if row[2] != event[2] and not _same_state(row[2], event[2]):
        return ReadModelCheck(False, event[0], event[1], "the row's content is not the event's")
    return None


def _same_state(row: bytes, event: bytes) -> bool:
    """Whether two stored states say the same (recorded time and record), whatever their bytes."""
    try:
        mine, theirs = decode_state(row), decode_state(event)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return (mine.timestamp, mine.record) == (theirs.timestamp, theirs.record)
