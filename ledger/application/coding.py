"""Adverse-event coding: ``code-ae`` records a coder's choice, ``coding`` lists what is left (issue 15).

A coding is an :class:`~ledger.domain.events.AdverseEventCoded` event in the
participant's stream, by a ``coder`` or a data manager: the dictionary and
version, and the lowest level term, preferred term, high level term, high
level group term and system organ class with their codes.  Recoding is a new
event; the latest coding of an AE counts, and the audit trail shows the codes
it replaced.  The ledger ships no dictionary (MedDRA is licensed): it records
what the coder chose.

A coding holds the verbatim term it coded.  When the term is corrected after
coding, the coding no longer counts: the AE is listed for coding again and the
SDTM export leaves its dictionary-derived terms null (a conformance finding).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from eventsourcing.application import AggregateNotFoundError

from ledger.application import access
from ledger.domain.entry import Entry
from ledger.domain.errors import InvalidInput
from ledger.domain.events import AdverseEventCoded
from ledger.domain.participant import Participant
from ledger.domain.rules.coding import needs_coding
from ledger.domain.rules.corrections import fold

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

ACTION = "code"


@dataclass(frozen=True)
class Coding:
    """What a coder chose for one adverse event: the dictionary and the five levels with their codes."""

    participant: str
    ae_id: str
    dictionary: str
    llt_code: int
    llt: str
    pt_code: int
    pt: str
    hlt_code: int
    hlt: str
    hlgt_code: int
    hlgt: str
    soc_code: int
    soc: str


@dataclass(frozen=True)
class Coded:
    """A stored coding, and the coding of the same AE it replaces (``None`` the first time)."""

    record: AdverseEventCoded
    replaced: AdverseEventCoded | None

    def to_json(self) -> dict[str, Any]:
        fields = msgspec.to_builtins(self.record)
        return {
            "event": self.record.id,
            **{k: v for k, v in fields.items() if k not in ("type", "id")},
            "replaced": None if self.replaced is None else self.replaced.id,
        }


def code_adverse_events(ledger: TrialLedger, user: str | None, codings: Sequence[Coding]) -> list[Coded]:
    """``code-ae``: record ``codings`` in one write, all or nothing; the stored events.

    Refused (exit 3, recorded) unless ``user`` is a coder or a data manager;
    a coding of an AE that is not reported, or voided, is invalid input (exit 2).
    """
    coder = access.acting(ledger, user, ACTION)

    def attempt() -> list[Coded]:
        users = access.Registry.load(ledger)
        for coding in codings:
            access.require(ledger, users, coder, ACTION, coding.participant)
        member = users.users.get(coder) if users is not None else None
        at = ledger.clock()
        aggregates: dict[str, Participant] = {}
        stored = []
        for coding in codings:
            if coding.participant not in aggregates:
                aggregates[coding.participant] = _participant(ledger, coding.participant)
            aggregate = aggregates[coding.participant]
            fields: dict[str, Any] = {
                **asdict(coding),
                "verbatim": aggregate.reported(coding.ae_id).term,
                "user": coder,
                "site": member.user_site if member is not None else None,
            }
            record: AdverseEventCoded = access.checked(AdverseEventCoded, fields)
            replaced = aggregate.codings.get(coding.ae_id)
            event_id = aggregate.append(record, ledger.protocol, at)
            stored.append(Coded(msgspec.structs.replace(record, id=event_id), replaced))
        ledger.save(*aggregates.values())
        return stored

    return ledger.write(attempt, action=ACTION, user=coder)


def _participant(ledger: TrialLedger, participant: str) -> Participant:
    try:
        aggregate = ledger.repository.get(participant)
    except AggregateNotFoundError:
        aggregate = None
    if not isinstance(aggregate, Participant):
        raise InvalidInput(f"participant: {participant} is not in the ledger")
    return aggregate


@dataclass(frozen=True)
class UncodedTerm:
    """An adverse event a coder still has to code, and why (``not coded`` or the term changed)."""

    participant: str
    ae_id: str
    term: str
    onset: dt.date
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "participant": self.participant,
            "ae_id": self.ae_id,
            "term": self.term,
            "onset": self.onset.isoformat(),
            "reason": self.reason,
        }


def uncoded(entries: Iterable[Entry]) -> list[UncodedTerm]:
    """``coding``: every reported, non-voided AE without a coding that counts, by participant and onset."""
    found = [
        UncodedTerm(participant, ae.ae_id, ae.report.record.term, ae.onset, reason)  # type: ignore[attr-defined]
        for participant, history in fold(entries).items()
        for ae, reason in needs_coding(history)
    ]
    return sorted(found, key=lambda t: (t.participant, t.onset, t.ae_id))
