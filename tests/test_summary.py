"""A participant's summary is their standing on every as-of date (issue 14, ``ledger.domain.summary``).

The read model answers ``status`` and ``endpoints`` from summaries: the
standing of each participant tabulated on the dates of
:func:`~ledger.domain.rules.status.status_changes` only.  These properties
check, for random charts (rescreening, infusions, CMV results before and after
day 1, disease assessments, adverse events and their updates, withdrawal,
death, corrections of dates and results, voids), that the tabulated standing
is the one the rules give on every single day, and that a summary brought up
to date batch by batch (steps before the earliest changed date kept) is the
summary computed from scratch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.domain.events import RecordSigned
from ledger.domain.protocol import Protocol, load_protocol
from ledger.domain.rules.corrections import ParticipantHistory, fold
from ledger.domain.rules.versions import AdoptedProtocol, ProtocolVersions
from ledger.domain.summary import Step, standing, standing_on, summary_of, touched_since
from tests.builders import D0, Ledger, day
from tests.conftest import PROTOCOL_FILES

PROTOCOLS = [load_protocol(path) for path in PROTOCOL_FILES.values()]
RESULTS = ["not_detected", "below_lloq", "quantified", "above_uloq"]
CODE = "NFH-001"


def _offset(draw: st.DrawFn, low: int = -20, high: int = 60) -> dt.date:
    return day(draw(st.integers(low, high)))


@st.composite
def charts(draw: st.DrawFn) -> tuple[Ledger, list[int]]:
    """A participant's entries and where the batches end (each batch one write)."""
    ledger = Ledger()
    ledger.screen(CODE, refractory_cmv=draw(st.sampled_from(["infection", "disease"])))
    ends = [1]
    clinical: list[Any] = []
    for _ in range(draw(st.integers(1, 14))):
        action = draw(
            st.sampled_from(
                ["enroll", "infuse", "cmv", "cmv", "cmv", "disease", "ae", "update", "rescreen", "end", "fix"]
            )
        )
        if action == "enroll":
            clinical.append(ledger.enroll(CODE, effective=_offset(draw, -10, 5)))
        elif action == "infuse":
            clinical.append(ledger.infuse(CODE, _offset(draw, -2, 30), course=draw(st.integers(1, 3))))
        elif action == "cmv":  # a few results some days apart, mostly negative: remission comes and goes
            on = _offset(draw)
            for _ in range(draw(st.integers(1, 4))):
                result = draw(st.sampled_from([*RESULTS[:2], *RESULTS[:2], *RESULTS]))
                clinical.append(ledger.cmv(CODE, on, result))
                on += dt.timedelta(days=draw(st.integers(0, 9)))
        elif action == "disease":
            status = draw(st.sampled_from(["active", "resolved"]))
            clinical.append(ledger.disease(CODE, _offset(draw), status))
        elif action == "ae":
            serious = draw(st.booleans())
            clinical.append(
                ledger.ae(CODE, _offset(draw, -3, 40), f"AE{len(clinical)}", serious=serious, grade=3)
            )
        elif action == "update":
            serious = draw(st.booleans())
            criteria = ["life_threatening"] if serious else []
            ledger.ae_update(CODE, _offset(draw, 0, 50), "AE1", serious=serious, criteria=criteria)
        elif action == "rescreen":
            ledger.screen(CODE, effective=_offset(draw, -15, 0), refractory_cmv="disease")
        elif action == "end":
            kind = draw(st.sampled_from([ledger.withdraw, ledger.death]))
            kind(CODE, _offset(draw, 5, 80))
        elif clinical:
            target = draw(st.sampled_from(clinical))
            if draw(st.booleans()):
                ledger.void(target)
                clinical.remove(target)
            else:
                ledger.correct(target, effective=_offset(draw).isoformat())
        if draw(st.booleans()) or len(ends) == 0:
            ends.append(len(ledger.entries))
    if ends[-1] != len(ledger.entries):
        ends.append(len(ledger.entries))
    return ledger, ends


def _history(ledger: Ledger, upto: int) -> ParticipantHistory | None:
    return fold(ledger.entries[:upto]).get(CODE)


def _versions(protocol: Protocol, amended: bool) -> ProtocolVersions:
    first = AdoptedProtocol(protocol, "1.0", dt.date.min, "1" * 64)
    if not amended:
        return ProtocolVersions((first,))
    other = PROTOCOLS[1] if protocol is PROTOCOLS[0] else PROTOCOLS[0]
    return ProtocolVersions((first, AdoptedProtocol(other, "2.0", D0 - dt.timedelta(days=5), "2" * 64)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chart=charts(), protocol=st.sampled_from(PROTOCOLS), amended=st.booleans())
def test_the_summary_is_the_standing_on_every_day(
    chart: tuple[Ledger, list[int]], protocol: Protocol, amended: bool
) -> None:
    ledger, _ = chart
    history = _history(ledger, len(ledger.entries))
    assert history is not None
    versions = _versions(protocol, amended)
    summary = summary_of(history, versions)
    for offset in range(-40, 420):
        on = day(offset)
        assert standing_on(summary, on) == standing(history, on, versions), on


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chart=charts(), protocol=st.sampled_from(PROTOCOLS))
def test_a_summary_kept_batch_by_batch_is_the_summary_from_scratch(
    chart: tuple[Ledger, list[int]], protocol: Protocol
) -> None:
    ledger, ends = chart
    versions = _versions(protocol, amended=False)
    kept: tuple[Step, ...] = ()
    start = 1
    for end in ends:
        after = _history(ledger, end)
        assert after is not None
        since = touched_since(ledger.entries[:end], start)
        if since is not None:
            kept = summary_of(after, versions, kept, since)
        assert kept == summary_of(after, versions)
        start = end + 1


def test_nothing_clinical_is_no_date() -> None:
    ledger = Ledger()
    ledger.treated(CODE)
    assert touched_since(ledger.entries, 4) is None
    assert touched_since(ledger.entries, 1) == ledger.entries[0].record.effective  # type: ignore[attr-defined]


def test_a_correction_or_a_void_touches_every_date_its_target_held() -> None:
    ledger = Ledger()
    ledger.treated(CODE)
    result = ledger.cmv(CODE, day(10))
    moved = ledger.correct(result, effective=day(20).isoformat())
    assert touched_since(ledger.entries, moved.position) == day(10)
    ledger.correct(result, effective=day(25).isoformat())
    assert touched_since(ledger.entries, len(ledger.entries)) == day(10)
    void = ledger.void(moved)  # the void of a correction: the dates of that correction's target
    assert touched_since(ledger.entries, void.position) == day(10)


def test_a_participant_before_screening_has_no_standing() -> None:
    ledger = Ledger()
    ledger.treated(CODE)
    history = _history(ledger, 3)
    assert history is not None
    summary = summary_of(history, _versions(PROTOCOLS[0], amended=False))
    assert standing_on(summary, summary[0].since - dt.timedelta(days=1)) is None
    assert summary[0].standing is not None and summary[0].standing.status.status == "screened"


def test_a_recurrence_after_the_resolution_of_cmv_disease_is_a_step() -> None:
    """Remission for a participant with CMV disease: virological CR, a positive, resolution, a positive.

    The first positive falls before the CR date (the resolution), so only the
    second is a recurrence; its date must be a step of the summary.
    """
    ledger = Ledger()
    ledger.treated(CODE, refractory_cmv="disease")
    for offset, result in ((3, "not_detected"), (9, "not_detected"), (12, "quantified")):
        ledger.cmv(CODE, day(offset), result)
    ledger.disease(CODE, day(15), "resolved")
    ledger.cmv(CODE, day(20), "quantified")
    history = _history(ledger, len(ledger.entries))
    assert history is not None
    versions = _versions(PROTOCOLS[0], amended=False)
    summary = summary_of(history, versions)
    statuses = [(step.since, step.standing.status.status) for step in summary if step.standing]
    assert (day(15), "complete_remission") in statuses
    assert (day(20), "recurrence") in statuses
    assert standing_on(summary, day(20)) == standing(history, day(20), versions)


def test_a_signature_in_the_chart_dates_nothing() -> None:
    """A record of the chart that is not clinical (a signature) has no clinical date: not a step."""
    ledger = Ledger()
    ledger.treated(CODE)
    ledger.add(
        RecordSigned,
        CODE,
        meaning="reviewed",
        signed_at=ledger.clock,
        covers=[(entry.record.id, "0" * 64) for entry in ledger.entries],
        signature="0" * 128,
    )
    history = _history(ledger, len(ledger.entries))
    assert history is not None
    versions = _versions(PROTOCOLS[0], amended=False)
    assert [step.since for step in summary_of(history, versions)] == [
        ledger.entries[0].record.effective,  # type: ignore[attr-defined]
        ledger.entries[1].record.effective,  # type: ignore[attr-defined]
        D0,
        D0 + dt.timedelta(days=PROTOCOLS[0].treatment.second_course_from_day - 1),
        D0 + dt.timedelta(days=PROTOCOLS[0].follow_up.window_days),
    ]
