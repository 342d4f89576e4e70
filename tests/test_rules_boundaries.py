"""The boundaries of the protocol rules, one table row each, on the pure functions (issue 16 item 3).

Each row is named after its rule and the side of the boundary it sits on; each
refusal is asserted with its whole message (participant, field and problem).
No store: records come from :mod:`tests.builders` and are folded in memory.
Protocol values come from the protocol under test (the shipped one and
``tests/protocols/second.toml``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from ledger.domain.errors import InvalidInput
from ledger.domain.events import AdverseEventReported, ClinicalRecord, CMVLoadMeasured, utc_text
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.endpoints import Judged, secondary
from ledger.domain.rules.ordering import Chart, check_clinical, day_start, replay
from ledger.domain.rules.remission import Sample, remission, virological_cr_date
from ledger.domain.rules.safety import adverse_events, late_sae_reports
from ledger.domain.rules.stats import beta_quantile, clopper_pearson, regularized_beta
from ledger.domain.rules.status import summarise
from ledger.domain.rules.versions import ProtocolVersions
from tests.builders import D0, Ledger, day, remission_days

AT = dt.datetime(2016, 1, 1, 12, 0, tzinfo=dt.UTC)  # when the checked record is written
TODAY = AT.date()
TOMORROW = TODAY + dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)
AWARE = dt.datetime.combine(day(3), dt.time(9), tzinfo=dt.UTC)


# -- order of events (ordering.check_clinical) -----------------------------------------------


def _chart(ledger: Ledger) -> Chart:
    chart = Chart()
    for entry in ledger.entries:
        chart.records[entry.record.id or ""] = entry.record  # type: ignore[assignment]
    return chart


def _refusal(ledger: Ledger, make: Callable[[Ledger], Any], protocol: Protocol) -> str | None:
    """The message refusing the record ``make`` adds, checked against the chart before it."""
    before = _chart(ledger)
    try:
        check_clinical(before, make(ledger).record, protocol, AT)
    except InvalidInput as exc:
        return str(exc)
    return None


def _screened(on: dt.date = D0 - dt.timedelta(days=7)) -> Ledger:
    ledger = Ledger()
    ledger.screen(effective=on, consent_date=on)
    return ledger


def _treated() -> Ledger:
    ledger = Ledger()
    ledger.treated()
    return ledger


def _died(on: dt.date) -> Ledger:
    ledger = _treated()
    ledger.death(on=on)
    return ledger


def _with_ae(serious: bool = False) -> Ledger:
    ledger = _treated()
    ledger.ae(on=day(5), serious=serious, grade=3)
    return ledger


ORDER: list[tuple[str, Callable[[], Ledger], Callable[[Ledger], Any], str | None]] = [
    (
        "known_site: a participant code of an unknown site",
        Ledger,
        lambda x: x.screen("XYZ-001"),
        "XYZ-001: participant: unknown site code 'XYZ' (<the protocol's sites>)",
    ),
    (
        "known_site: a record naming an unknown site",
        _treated,
        lambda x: x.cmv(site="XYZ"),
        "NFH-001: site: unknown site code 'XYZ'",
    ),
    ("known_site: a record naming no site", _treated, lambda x: x.cmv(site=None), None),
    (
        "entered_at_bounds: a second before the clinical date began",
        _treated,
        lambda x: x.cmv(on=day(3), entered_at=day_start(day(3)) - SECOND),
        f"NFH-001: entered_at: {utc_text(day_start(day(3)) - SECOND)} is before the clinical date {day(3)}"
        f" began ({utc_text(day_start(day(3)))}) (rule entered_at_bounds)",
    ),
    (
        "entered_at_bounds: a second before the site became aware",
        _treated,
        lambda x: x.ae(on=day(3), aware_at=AWARE, entered_at=AWARE - SECOND),
        f"NFH-001: entered_at: {utc_text(AWARE - SECOND)} is before the site became aware of AE AE1"
        f" ({utc_text(AWARE)}) (rule entered_at_bounds)",
    ),
    (
        "entered_at_bounds: a second after the recording",
        _treated,
        lambda x: x.cmv(on=day(3), entered_at=AT + SECOND),
        f"NFH-001: entered_at: {utc_text(AT + SECOND)} is after the time it is recorded, {utc_text(AT)}"
        " (rule entered_at_bounds)",
    ),
    ("no_future_date: an event dated today", _treated, lambda x: x.cmv(on=TODAY), None),
    (
        "no_future_date: an event dated tomorrow",
        _treated,
        lambda x: x.cmv(on=TOMORROW),
        f"NFH-001: effective: {TOMORROW} is in the future",
    ),
    (
        "no_future_consent: consent dated today",
        Ledger,
        lambda x: x.screen(effective=TODAY, consent_date=TODAY),
        None,
    ),
    (
        "no_future_consent: consent dated tomorrow",
        Ledger,
        lambda x: x.screen(effective=TODAY, consent_date=TOMORROW),
        f"NFH-001: consent_date: {TOMORROW} is in the future",
    ),
    (
        "single_screening: a second screening",
        _screened,
        lambda x: x.screen(),
        f"NFH-001: type: already screened on {D0 - dt.timedelta(days=7)} (NFH-001#1)",
    ),
    (
        "screened_first: an enrollment before any screening",
        Ledger,
        lambda x: x.enroll(),
        "NFH-001: participant: not screened: record ParticipantScreened first",
    ),
    (
        "enrollment_after_screening: enrollment on the screening day",
        _screened,
        lambda x: x.enroll(effective=D0 - dt.timedelta(days=7)),
        None,
    ),
    (
        "enrollment_after_screening: enrollment the day before screening",
        _screened,
        lambda x: x.enroll(effective=D0 - dt.timedelta(days=8)),
        f"NFH-001: effective: enrollment before screening ({D0 - dt.timedelta(days=7)})",
    ),
    (
        "single_enrollment: a second enrollment",
        _treated,
        lambda x: x.enroll(effective=D0),
        f"NFH-001: type: already enrolled on {D0 - dt.timedelta(days=3)}",
    ),
    (
        "infusion_after_enrollment: an infusion of a participant never enrolled",
        _screened,
        lambda x: x.infuse(),
        "NFH-001: type: no infusion before enrollment: not enrolled",
    ),
    (
        "nothing_after_death: an event on the day of death",
        lambda: _died(day(20)),
        lambda x: x.cmv(on=day(20)),
        None,
    ),
    (
        "nothing_after_death: an event the day after the death",
        lambda: _died(day(20)),
        lambda x: x.cmv(on=day(21)),
        f"NFH-001: effective: {day(21)} is after the death on {day(20)}",
    ),
    (
        "nothing_after_death: an event dated before an existing death",
        lambda: _died(day(20)),
        lambda x: x.cmv(on=day(19)),
        None,
    ),
    (
        "single_death: a second death",
        lambda: _died(day(20)),
        lambda x: x.death(on=day(20)),
        f"NFH-001: type: death already recorded on {day(20)}",
    ),
    (
        "no_death_before_events: a death on the day of the last event",
        _treated,
        lambda x: x.death(on=D0),
        None,
    ),
    (
        "no_death_before_events: a death the day before the last event",
        _treated,
        lambda x: x.death(on=day(0)),
        f"NFH-001: effective: death date before events dated {D0}",
    ),
    (
        "unique_ae_id: a second report of the same AE id",
        _with_ae,
        lambda x: x.ae(on=day(6), ae_id="AE1"),
        "NFH-001: ae_id: AE AE1 already reported (NFH-001#4)",
    ),
    ("unique_ae_id: a report of another AE id", _with_ae, lambda x: x.ae(on=day(6), ae_id="AE2"), None),
    (
        "ae_update_of_a_reported_ae: an update of an AE never reported",
        _with_ae,
        lambda x: x.ae_update(on=day(6), ae_id="AE2", grade=2),
        "NFH-001: ae_id: no adverse event AE2 reported",
    ),
    (
        "ae_update_leaves_a_valid_ae: an update making the AE serious without criteria",
        _with_ae,
        lambda x: x.ae_update(on=day(6), serious=True),
        "NFH-001: AE AE1 after update: a serious adverse event needs at least one seriousness criterion"
        " - at `$.criteria`",
    ),
    (
        "ae_update_leaves_a_valid_ae: a grade 5 update without the criterion death",
        lambda: _with_ae(serious=True),
        lambda x: x.ae_update(on=day(6), grade=5),
        "NFH-001: AE AE1 after update: grade 5 requires serious = true with the criterion 'death'"
        " - at `$.grade`",
    ),
    (
        "ae_update_leaves_a_valid_ae: a valid update",
        lambda: _with_ae(serious=True),
        lambda x: x.ae_update(on=day(6), grade=5, criteria=["death"]),
        None,
    ),
    (
        "ae_resolved_after_onset: resolved the day before the onset",
        _with_ae,
        lambda x: x.ae_update(on=day(6), outcome="recovered", resolved_date=day(4)),
        f"NFH-001: resolved_date: before the AE onset {day(5)}",
    ),
    (
        "ae_resolved_after_onset: resolved on the onset day",
        _with_ae,
        lambda x: x.ae_update(on=day(6), outcome="recovered", resolved_date=day(5)),
        None,
    ),
]


@pytest.mark.parametrize(("name", "setup", "make", "problem"), ORDER, ids=[row[0] for row in ORDER])
def test_order_boundaries(
    protocol: Protocol,
    name: str,
    setup: Callable[[], Ledger],
    make: Callable[[Ledger], Any],
    problem: str | None,
) -> None:
    expected = (
        None if problem is None else problem.replace("<the protocol's sites>", ", ".join(protocol.sites))
    )
    assert _refusal(setup(), make, protocol) == expected


# -- eligibility at its bounds (eligibility.failed_criteria through check_clinical) ------------


@pytest.mark.parametrize(
    ("field", "side", "eligible"),
    [
        ("age_years", "min", True),
        ("age_years", "below", False),
        ("age_years", "max", True),
        ("age_years", "above", False),
        ("hr", "min", True),
        ("hr", "below", False),
        ("hr", "max", True),
        ("hr", "above", False),
        ("dbp", "max", True),
        ("dbp", "above", False),
    ],
    ids=lambda value: str(value),
)
def test_eligibility_bounds_are_included(protocol: Protocol, field: str, side: str, eligible: bool) -> None:
    rules = protocol.eligibility
    low, high = (rules.age_min, rules.age_max) if field == "age_years" else getattr(rules, field)
    value = {"min": low, "below": low - 1, "max": high, "above": high + 1}[side]
    summary = summarise(_fold_screened(protocol, **{field: value}), D0, protocol)
    assert summary is not None
    assert (summary.status == "screened") is eligible
    assert [criterion.split(":")[0] for criterion in summary.screen_failures] == (
        [] if eligible else [field.split("_")[0]]
    )


def _fold_screened(protocol: Protocol, **fields: Any) -> Any:
    ledger = Ledger()
    rules = protocol.eligibility
    values = {
        "age_years": rules.age_min,
        "hr": rules.hr[0],
        "rr": rules.rr[0],
        "sbp": rules.sbp[0],
        "dbp": rules.dbp[0],
    }
    ledger.screen(**{**values, **fields})
    return fold(ledger.entries)["NFH-001"]


def test_refractory_cmv_disease_is_eligible_through_check_clinical(protocol: Protocol) -> None:
    ledger = Ledger()
    rules = protocol.eligibility
    ledger.screen(
        refractory_cmv="disease",
        age_years=rules.age_min,
        hr=rules.hr[0],
        rr=rules.rr[0],
        sbp=rules.sbp[0],
        dbp=rules.dbp[0],
    )
    assert _refusal(ledger, lambda x: x.enroll(), protocol) is None


# -- remission (remission.remission, remission.virological_cr_date) ----------------------------


def _negatives(days: list[int]) -> list[Sample]:
    return [Sample(day(number), number, "not_detected") for number in days]


def test_remission_disease_assessment_of_an_infection_participant_is_not_needed(protocol: Protocol) -> None:
    days = remission_days(20, protocol.remission)
    outcome = remission(_negatives(days), D0, protocol.remission, False, [(day(30), "resolved")])
    assert (outcome.virological_cr, outcome.resolution, outcome.cr_date) == (day(20), None, day(20))


@pytest.mark.parametrize(
    ("resolved_on", "cr_on"),
    [(1, 20), (0, None), (25, 25)],
    ids=[
        "disease_resolution: resolved on day 1",
        "disease_resolution: resolved on day 0",
        "disease_resolution: resolved after the virological CR",
    ],
)
def test_remission_resolution_boundaries(protocol: Protocol, resolved_on: int, cr_on: int | None) -> None:
    days = remission_days(20, protocol.remission)
    outcome = remission(_negatives(days), D0, protocol.remission, True, [(day(resolved_on), "resolved")])
    assert outcome.cr_date == (None if cr_on is None else day(cr_on))
    assert outcome.resolution == (None if resolved_on < 1 else day(resolved_on))


def test_remission_negative_run_count_restarts_after_a_positive(protocol: Protocol) -> None:
    rules = protocol.remission
    # all negatives but the last of a series, then a positive, then the last negative: the positive
    # restarts the count, so the series is one short
    days = remission_days(40, rules)
    samples = [*_negatives(days[:-1]), Sample(day(days[-1] - 1), 1000, "quantified"), *_negatives(days[-1:])]
    assert virological_cr_date(samples, D0, rules) is None
    # the run restarts at that last negative: the samples it lacks, the gap later, complete it
    completing = [
        Sample(day(40 + rules.min_gap_days), 2000 + k, "below_lloq") for k in range(rules.samples - 1)
    ]
    assert virological_cr_date([*samples, *completing], D0, rules) == day(40 + rules.min_gap_days)


@pytest.mark.parametrize(
    ("first", "cr_on"),
    [(1, 20), (0, None)],
    ids=["virological_cr: first sample on day 1", "virological_cr: first sample on day 0"],
)
def test_remission_counts_samples_from_day_1(protocol: Protocol, first: int, cr_on: int | None) -> None:
    rules = protocol.remission
    samples = (
        _negatives([first, *remission_days(20, rules)[1:]]) if rules.samples > 1 else _negatives([first])
    )
    last = 20 if rules.samples > 1 else first
    expected = None if cr_on is None else day(last)
    if rules.samples > 1 and 20 - first < rules.min_gap_days:
        expected = None
    assert virological_cr_date(samples, D0, rules) == expected


# -- late SAE report at the reporting limit (safety.late_sae_reports) ------------------------


@pytest.mark.parametrize(
    ("extra", "late"),
    [(dt.timedelta(0), False), (dt.timedelta(seconds=1), True)],
    ids=[
        "late_sae_report: made serious by an update, recorded at the limit",
        "late_sae_report: one second past the limit",
    ],
)
def test_late_sae_made_serious_by_update_at_the_limit(
    protocol: Protocol, extra: dt.timedelta, late: bool
) -> None:
    ledger = _treated()
    aware = dt.datetime.combine(day(2), dt.time(9), tzinfo=dt.UTC)
    ledger.ae(on=day(2), aware_at=aware, recorded_at=aware + dt.timedelta(hours=1))
    end_of_day = dt.datetime.combine(day(7), dt.time(), tzinfo=dt.UTC)
    limit = end_of_day + dt.timedelta(hours=protocol.safety.sae_report_hours)
    ledger.ae_update(on=day(6), serious=True, criteria=["hospitalisation"], recorded_at=limit + extra)
    history = fold(ledger.entries)["NFH-001"]
    assert late_sae_reports(history, day(6), protocol) == (["AE1"] if late else [])
    assert late_sae_reports(history, day(5), protocol) == []  # the update is not yet in effect


@pytest.mark.parametrize(
    ("extra", "late"),
    [(dt.timedelta(0), False), (dt.timedelta(seconds=1), True)],
    ids=[
        "late_sae_report: serious when reported, at the limit",
        "late_sae_report: serious when reported, one second past",
    ],
)
def test_late_sae_reported_serious_at_the_limit(protocol: Protocol, extra: dt.timedelta, late: bool) -> None:
    ledger = _treated()
    aware = dt.datetime.combine(day(2), dt.time(9), tzinfo=dt.UTC)
    limit = aware + dt.timedelta(hours=protocol.safety.sae_report_hours)
    ledger.ae(on=day(2), serious=True, aware_at=aware, recorded_at=limit + extra)
    assert late_sae_reports(fold(ledger.entries)["NFH-001"], day(2), protocol) == (["AE1"] if late else [])


def test_resolved_date_of_an_ae_is_that_of_its_latest_update() -> None:
    ledger = _with_ae()
    ledger.ae_update(on=day(8), outcome="recovering")
    ledger.ae_update(on=day(9), outcome="recovered", resolved_date=day(9))
    ledger.ae_update(on=day(12), grade=2)
    history = fold(ledger.entries)["NFH-001"]
    [before] = adverse_events(history, day(8))
    [after] = adverse_events(history, day(12))
    assert (before.outcome, before.resolved_date) == ("recovering", None)
    assert (after.outcome, after.resolved_date, after.grade) == ("recovered", day(9), 2)


# -- secondary endpoint: a category with two serious events (endpoints.secondary) ------------


def test_secondary_a_category_with_two_serious_events(protocol: Protocol) -> None:
    ledger = _treated()
    ledger.ae(on=day(3), ae_id="AE1", category="infection", serious=True)
    ledger.ae(on=day(4), ae_id="AE2", category="infection", serious=True)
    ledger.ae(on=day(5), ae_id="AE3", category="infection")
    history = fold(ledger.entries)["NFH-001"]
    versions = ProtocolVersions.only(protocol)
    status = summarise(history, day(10), protocol)
    assert status is not None
    result = secondary([Judged(history, status, versions.in_force(day(10)))], day(10))
    assert result["by_category"]["infection"] == {"participants": 1, "events": 3, "serious_events": 2}
    assert (result["participants_with_serious_ae"], result["participants_with_nonserious_ae"]) == (1, 1)


# -- guards of the statistics (stats) ---------------------------------------------------------


GUARDS: list[tuple[str, Callable[[], object], str | None]] = [
    (
        "regularized_beta: a = 0",
        lambda: regularized_beta(0, 1, 0.5),
        "regularized_beta needs a > 0 and b > 0",
    ),
    (
        "regularized_beta: a < 0",
        lambda: regularized_beta(-1, 1, 0.5),
        "regularized_beta needs a > 0 and b > 0",
    ),
    (
        "regularized_beta: b = 0",
        lambda: regularized_beta(1, 0, 0.5),
        "regularized_beta needs a > 0 and b > 0",
    ),
    ("regularized_beta: a, b tiny but positive", lambda: regularized_beta(1e-9, 1e-9, 0.5), None),
    (
        "regularized_beta: x below 0",
        lambda: regularized_beta(1, 1, -1e-12),
        "regularized_beta needs 0 <= x <= 1",
    ),
    (
        "regularized_beta: x above 1",
        lambda: regularized_beta(1, 1, 1 + 1e-12),
        "regularized_beta needs 0 <= x <= 1",
    ),
    ("beta_quantile: p below 0", lambda: beta_quantile(-1e-12, 1, 1), "beta_quantile needs 0 <= p <= 1"),
    ("beta_quantile: p above 1", lambda: beta_quantile(1 + 1e-12, 1, 1), "beta_quantile needs 0 <= p <= 1"),
    ("clopper_pearson: no trial", lambda: clopper_pearson(0, 0), "clopper_pearson needs at least one trial"),
    (
        "clopper_pearson: n above total",
        lambda: clopper_pearson(3, 2),
        "clopper_pearson needs 0 <= n <= total",
    ),
    ("clopper_pearson: n below 0", lambda: clopper_pearson(-1, 2), "clopper_pearson needs 0 <= n <= total"),
    (
        "clopper_pearson: confidence 0",
        lambda: clopper_pearson(1, 2, 0.0),
        "confidence must lie strictly between 0 and 1",
    ),
    (
        "clopper_pearson: confidence 1",
        lambda: clopper_pearson(1, 2, 1.0),
        "confidence must lie strictly between 0 and 1",
    ),
    ("clopper_pearson: confidence just inside 1", lambda: clopper_pearson(1, 2, 0.999999), None),
]


@pytest.mark.parametrize(("name", "call", "problem"), GUARDS, ids=[row[0] for row in GUARDS])
def test_statistics_guards(name: str, call: Callable[[], object], problem: str | None) -> None:
    if problem is None:
        call()
        return
    with pytest.raises(ValueError) as raised:
        call()
    assert str(raised.value) == problem


def test_replay_rebuilds_a_valid_chart_and_refuses_a_broken_one(protocol: Protocol) -> None:
    ledger = _treated()
    ledger.cmv(on=day(3))
    records = [entry.record for entry in ledger.entries]
    chart = replay(records, protocol, AT)  # type: ignore[arg-type]
    assert list(chart.records.values()) == records
    ledger.infuse(on=day(20), course=1)
    with pytest.raises(InvalidInput) as refused:
        replay([entry.record for entry in ledger.entries], protocol, AT)  # type: ignore[arg-type]
    assert str(refused.value) == "NFH-001: course: course 1 already recorded (NFH-001#3)"


def test_remission_after_a_positive_one_sample_short_is_no_remission(protocol: Protocol) -> None:
    """After a positive, samples - 1 negatives spanning the gap are one short: the count restarts at 0."""
    rules = protocol.remission
    gap = rules.min_gap_days
    after = sorted({30, *(30 + gap * k // max(rules.samples - 2, 1) for k in range(rules.samples - 1))})
    samples = [
        *_negatives(remission_days(20, rules)[:-1]),
        Sample(day(21), 0, "above_uloq"),
        *_negatives(after),
    ]
    assert virological_cr_date(samples, D0, rules) is None
    assert virological_cr_date([*samples, *_negatives([31 + gap])], D0, rules) == day(31 + gap)


def test_chart_index_follows_a_record_replaced_by_one_of_another_type() -> None:
    """The chart's index by type (``ordering.ChartRecords``) stays true when a key changes type."""
    ledger = _treated()
    sample = ledger.cmv(on=day(3)).record
    later = ledger.cmv(on=day(4)).record
    ae = ledger.ae(on=day(5)).record
    chart = _chart(ledger)
    assert chart.of_type(CMVLoadMeasured) == [sample, later]  # fills the index's cache
    chart.records[sample.id or ""] = ae
    assert chart.of_type(CMVLoadMeasured) == [later]
    assert chart.first(CMVLoadMeasured) == later
    assert chart.of_type(AdverseEventReported) == [ae, ae]
    assert [type(r) for r in chart.of_type(ClinicalRecord)][-3:] == [
        AdverseEventReported,
        CMVLoadMeasured,
        AdverseEventReported,
    ]
