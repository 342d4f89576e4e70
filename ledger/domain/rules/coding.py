"""Adverse-event coding: what a coding may code, and which coding counts (issue 15).

:func:`coded_report` and :func:`check_coding` are the write side (the
participant aggregate runs them before an ``AdverseEventCoded`` is stored);
:func:`current_codings` and :func:`needs_coding` the read side (the SDTM export,
the ``coding`` list).  The latest coding of an AE counts while the AE's term
reads as it did when coded; after a correction of the term it needs coding again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from ledger.domain.errors import InvalidInput
from ledger.domain.events import CODING_FIELDS, AdverseEventCoded, AdverseEventReported
from ledger.domain.rules.corrections import ParticipantHistory
from ledger.domain.rules.safety import AdverseEvent, adverse_events


def coded_report(who: str, reports: Iterable[AdverseEventReported], ae_id: str) -> AdverseEventReported:
    """Rule ``coding_of_a_reported_ae``: the AE a coding names is reported and not voided; its report."""
    for report in reports:
        if report.ae_id == ae_id:
            return report
    raise InvalidInput(
        f"{who}: ae_id: no adverse event {ae_id} is reported (and not voided) (rule coding_of_a_reported_ae)"
    )


def check_coding(who: str, before: AdverseEventCoded | None, coding: AdverseEventCoded) -> None:
    """Rule ``recoding_changes_something``: a recoding differs from the AE's latest coding."""
    if before is not None and all(
        getattr(before, name) == getattr(coding, name) for name in ("verbatim", *CODING_FIELDS)
    ):
        raise InvalidInput(
            f"{who}: ae_id: {coding.ae_id} is already coded with these terms and codes"
            " (rule recoding_changes_something)"
        )


def current_codings(history: ParticipantHistory) -> dict[str, AdverseEventCoded]:
    """The coding that counts for each AE: the latest, while it coded the term as the term reads now."""
    latest: dict[str, AdverseEventCoded] = {}
    for event in history.of_type(AdverseEventCoded):
        coding: AdverseEventCoded = event.record  # type: ignore[assignment]
        latest[coding.ae_id] = coding
    terms = {ae.ae_id: _term(ae) for ae in adverse_events(history, dt.date.max)}
    return {ae_id: coding for ae_id, coding in latest.items() if terms.get(ae_id) == coding.verbatim}


def needs_coding(history: ParticipantHistory) -> list[tuple[AdverseEvent, str]]:
    """The reported, non-voided AEs no coding counts for, in onset order, each with why.

    ``not coded``, or ``term corrected since coding`` when the AE was coded
    before a correction of its term.
    """
    counted = current_codings(history)
    coded = {event.record.ae_id for event in history.of_type(AdverseEventCoded)}  # type: ignore[attr-defined]
    return [
        (ae, "term corrected since coding" if ae.ae_id in coded else "not coded")
        for ae in adverse_events(history, dt.date.max)
        if ae.ae_id not in counted
    ]


def _term(ae: AdverseEvent) -> str:
    report = ae.report.record
    assert isinstance(report, AdverseEventReported)
    return report.term
