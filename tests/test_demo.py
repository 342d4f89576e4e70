"""The demo trial generator (ledger/simulation/demo.py) against the rules of SPEC sections 2, 5 and 6.

The checks below are written from the SPEC text, independently of the
generator: eligibility (section 2), courses and complete remission (section 2),
adverse events (section 2), corrections and voids (sections 5 and 6) and the
import format (section 6).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest

from ledger.domain.events import (
    CATEGORIES,
    AdverseEventReported,
    AdverseEventUpdated,
    ClinicalRecord,
    CMVDiseaseAssessed,
    CMVLoadMeasured,
    EventCorrected,
    EventVoided,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    ParticipantWithdrew,
    Record,
    apply_changes,
    decode_line,
)
from ledger.domain.protocol import Protocol, load_protocol
from ledger.simulation.demo import generate_trial, write_jsonl

PROTOCOL = load_protocol()
NEGATIVE = {"not_detected", "below_lloq"}
POSITIVE = {"quantified", "above_uloq"}
LAST_DATE = dt.date(2016, 12, 31)


@pytest.fixture(scope="module")
def trial() -> list[dict[str, Any]]:
    return generate_trial()


@pytest.fixture(scope="module")
def records(trial: list[dict[str, Any]]) -> list[Record]:
    return [decode_line(json.dumps(line)) for line in trial]


@pytest.fixture(scope="module")
def current(records: list[Record]) -> list[Record]:
    """The records as corrected, voided ones left out, in ledger order (SPEC section 5)."""
    return current_records(records)


# -- helpers written from the SPEC ---------------------------------------------------


def current_records(records: list[Record]) -> list[Record]:
    by_id: dict[str, Record] = {}
    voided: set[str] = set()
    for record in records:
        if isinstance(record, EventCorrected):
            by_id[record.target] = apply_changes(by_id[record.target], record.changes)
        elif isinstance(record, EventVoided):
            voided.add(record.target)
        else:
            assert record.id is not None
            by_id[record.id] = record
    return [r for key, r in by_id.items() if key not in voided]


def failed_criteria(
    screening: ParticipantScreened, enrollment_date: dt.date, protocol: Protocol = PROTOCOL
) -> list[str]:
    """SPEC section 2: the eligibility criteria the screening record fails at enrollment."""
    rules = protocol.eligibility
    failed = []
    # age 14 to 65 years inclusive on the consent date
    if not rules.age_min <= screening.age_years <= rules.age_max:
        failed.append("age")
    # refractory CMV infection or CMV disease documented
    if screening.refractory_cmv not in ("infection", "disease"):
        failed.append("refractory_cmv")
    # informed consent signed on or before the enrollment date
    if screening.consent_date > enrollment_date:
        failed.append("consent")
    # no abnormal vital sign at screening
    for vital in ("hr", "rr", "sbp", "dbp"):
        low, high = getattr(rules, vital)
        if not low <= getattr(screening, vital) <= high:
            failed.append(vital)
    # not excluded by investigator decision
    if screening.investigator_excluded:
        failed.append("investigator_excluded")
    return failed


def by_participant(records: list[Record]) -> dict[str, list[ClinicalRecord]]:
    grouped: dict[str, list[ClinicalRecord]] = defaultdict(list)
    for record in records:
        if isinstance(record, ClinicalRecord):
            grouped[record.participant].append(record)
    return grouped


def of_type(records: list[Any], kind: type) -> list[Any]:
    return [r for r in records if isinstance(r, kind)]


def study_day(day1: dt.date, date: dt.date) -> int:
    return (date - day1).days + 1


def cr_date(history: list[ClinicalRecord], as_of: dt.date | None = None) -> dt.date | None:
    """SPEC section 2, complete remission, from a participant's current records."""
    infusions = sorted(r.effective for r in of_type(history, MSCInfused))
    if not infusions:
        return None
    day1 = infusions[0]
    screening = of_type(history, ParticipantScreened)[0]
    limit = as_of or dt.date.max
    results = sorted(  # by sample date; one date in recorded (list) order
        (r for r in of_type(history, CMVLoadMeasured) if day1 <= r.effective <= limit),
        key=lambda r: r.effective,
    )
    virological = None
    first: dt.date | None = None
    for result in results:
        if result.result in POSITIVE:
            first = None
        elif first is None:
            first = result.effective
        elif (result.effective - first).days >= PROTOCOL.remission.min_gap_days:
            virological = result.effective
            break
    if virological is None:
        return None
    if screening.refractory_cmv != "disease":
        return virological
    resolved = [
        r.effective
        for r in of_type(history, CMVDiseaseAssessed)
        if r.status == "resolved" and day1 <= r.effective <= limit
    ]
    return max(virological, min(resolved)) if resolved else None


def ae_state(history: list[ClinicalRecord]) -> dict[str, dict[str, Any]]:
    """Every AE of a participant with its values after all updates (SPEC section 3)."""
    state: dict[str, dict[str, Any]] = {}
    for record in history:
        if isinstance(record, AdverseEventReported):
            state[record.ae_id] = msgspec.structs.asdict(record)
        elif isinstance(record, AdverseEventUpdated):
            for name in ("grade", "serious", "criteria", "outcome", "resolved_date"):
                value = getattr(record, name)
                if value is not None:
                    state[record.ae_id][name] = value
    return state


def entered(line: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(line["entered_at"])


# -- the import format (SPEC section 6) -----------------------------------------------


def test_every_line_decodes_with_the_edge_schema(trial: list[dict[str, Any]]) -> None:
    assert len(trial) > 2000
    for number, line in enumerate(trial, start=1):
        record = decode_line(json.dumps(line))
        assert record.type == line["type"], number
        assert record.id == line["id"]


def test_ids_unique_and_every_line_has_user_site_and_entry_time(
    trial: list[dict[str, Any]],
) -> None:
    ids = [line["id"] for line in trial]
    assert len(ids) == len(set(ids))
    for line in trial:
        assert line["user"].startswith(line["site"].lower() + "."), line
        assert line["entered_at"].endswith("+08:00")
    users = defaultdict(set)
    for line in trial:
        users[line["site"]].add(line["user"])
    assert set(users) == set(PROTOCOL.sites)
    assert all(len(names) >= 2 for names in users.values())


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    assert generate_trial() == generate_trial()
    assert generate_trial(participants=30, seed=7) == generate_trial(participants=30, seed=7)
    assert generate_trial(seed=2015) != generate_trial()
    assert generate_trial(participants=30, seed=7) != generate_trial(participants=30, seed=8)


def test_lines_are_in_entry_order_with_dependencies_first(
    trial: list[dict[str, Any]], records: list[Record]
) -> None:
    times = [entered(line) for line in trial]
    assert times == sorted(times)
    seen_ids: set[str] = set()
    screened: set[str] = set()
    enrolled: set[str] = set()
    reported: set[tuple[str, str]] = set()
    for record in records:
        if isinstance(record, (EventCorrected, EventVoided)):
            assert record.target in seen_ids, record
        elif isinstance(record, ParticipantScreened):
            assert record.participant not in screened
            screened.add(record.participant)
        else:
            assert isinstance(record, ClinicalRecord)
            assert record.participant in screened, record
            if isinstance(record, ParticipantEnrolled):
                enrolled.add(record.participant)
            if isinstance(record, MSCInfused):
                assert record.participant in enrolled, record
            if isinstance(record, AdverseEventReported):
                reported.add((record.participant, record.ae_id))
            if isinstance(record, AdverseEventUpdated):
                assert (record.participant, record.ae_id) in reported, record
        assert record.id is not None
        seen_ids.add(record.id)


# -- screening and eligibility (SPEC sections 1 and 2) --------------------------------


def test_population_sites_and_codes(records: list[Record]) -> None:
    screenings = of_type(records, ParticipantScreened)
    enrollments = of_type(records, ParticipantEnrolled)
    assert len(enrollments) == 120
    assert len({e.participant for e in enrollments}) == 120
    failures = len(screenings) - len(enrollments)
    assert 12 <= failures <= 18  # 10-15 % more screened than enrolled
    per_site = Counter(s.site for s in screenings)
    assert set(per_site) == set(PROTOCOL.sites)
    assert max(per_site, key=per_site.__getitem__) == "NFH"
    for site in PROTOCOL.sites:  # numbered per site in screening-date order
        numbered = sorted((s for s in screenings if s.site == site), key=lambda s: s.participant)
        codes = [s.participant for s in numbered]
        assert codes == [f"{site}-{n:03d}" for n in range(1, len(codes) + 1)]
        dates = [s.effective for s in numbered]
        assert dates == sorted(dates)
    dates = sorted(s.effective for s in screenings)
    assert dates[0] >= dt.date(2014, 1, 1) and dates[0] < dt.date(2014, 2, 1)
    assert dt.date(2015, 6, 1) < dates[-1] <= dt.date(2015, 12, 31)


def test_enrolled_participants_are_eligible_except_documented_deviations(
    records: list[Record],
) -> None:
    screenings = {s.participant: s for s in of_type(records, ParticipantScreened)}
    deviations = 0
    for enrollment in of_type(records, ParticipantEnrolled):
        screening = screenings[enrollment.participant]
        failed = failed_criteria(screening, enrollment.effective)
        if enrollment.deviation is None:
            assert failed == [], (enrollment.participant, failed)
        else:
            deviations += 1
            assert failed, enrollment.participant
            assert len(enrollment.deviation) > 20
        assert 1 <= (enrollment.effective - screening.effective).days <= 7
    assert deviations in (1, 2)


def test_screen_failures_fail_a_criterion_and_are_never_enrolled(records: list[Record]) -> None:
    enrolled = {e.participant for e in of_type(records, ParticipantEnrolled)}
    failures = [s for s in of_type(records, ParticipantScreened) if s.participant not in enrolled]
    kinds: Counter[str] = Counter()
    for screening in failures:
        failed = failed_criteria(screening, screening.effective)
        # a consent dated after screening cannot fail yet, but it keeps them out
        assert failed or screening.consent_date > screening.effective, screening
        kinds.update(failed or ["consent"])
        others = [r for r in by_participant(records)[screening.participant]]
        assert len(others) == 1  # nothing but the screening
    assert {"age", "refractory_cmv", "investigator_excluded"} <= set(kinds)
    assert kinds.keys() & {"hr", "rr", "sbp", "dbp"}


# -- dates ------------------------------------------------------------------------


def test_dates_are_consistent(current: list[Record]) -> None:
    for participant, history in by_participant(current).items():
        screening = of_type(history, ParticipantScreened)[0]
        enrollment = of_type(history, ParticipantEnrolled)
        deaths = of_type(history, ParticipantDied)
        withdrawals = of_type(history, ParticipantWithdrew)
        assert len(deaths) + len(withdrawals) <= 1
        end = (deaths or withdrawals)[0].effective if deaths or withdrawals else LAST_DATE
        for record in history:
            assert screening.effective <= record.effective <= min(end, LAST_DATE), record
            if isinstance(record, AdverseEventReported):
                aware = record.aware_at
                assert aware.utcoffset() == dt.timedelta(hours=8)
                assert record.effective <= aware.date() <= end, record
            if isinstance(record, AdverseEventUpdated) and record.resolved_date:
                assert record.resolved_date <= end
        infusions = of_type(history, MSCInfused)
        if infusions:
            assert enrollment
            assert all(i.effective >= enrollment[0].effective for i in infusions)
            first = min(i.effective for i in infusions)
            assert 0 <= (first - enrollment[0].effective).days <= 3, participant
    last = max(r.effective for r in current if isinstance(r, ClinicalRecord))
    assert dt.date(2016, 9, 1) <= last <= LAST_DATE


# -- treatment and remission (SPEC section 2) ------------------------------------------


def test_courses_follow_the_protocol(current: list[Record]) -> None:
    target = PROTOCOL.treatment.target_cells_per_kg
    tolerance = PROTOCOL.treatment.dose_tolerance
    second_courses = 0
    dose_deviations = 0
    for participant, history in by_participant(current).items():
        infusions = sorted(of_type(history, MSCInfused), key=lambda i: i.effective)
        if not infusions:
            continue
        assert [i.course for i in infusions] in ([1], [1, 2]), participant
        for infusion in infusions:
            assert infusion.lot
            if abs(infusion.cells_per_kg / target - 1) > tolerance:
                dose_deviations += 1
        day1 = infusions[0].effective
        day14 = day1 + dt.timedelta(days=13)
        cr_by_day_14 = cr_date(history, as_of=day14) is not None
        if len(infusions) == 2:
            second_courses += 1
            assert not cr_by_day_14, participant
            assert 15 <= study_day(day1, infusions[1].effective) <= 21
            final = cr_date(history)
            assert final is None or infusions[1].effective <= final, participant
        else:
            # no second course: CR by day 14, or the participant was gone by day 15
            ended = of_type(history, ParticipantDied) + of_type(history, ParticipantWithdrew)
            assert cr_by_day_14 or (ended and study_day(day1, ended[0].effective) <= 21), participant
    assert second_courses >= 30
    assert 2 <= dose_deviations <= 10


def test_cmv_results_are_realistic(trial: list[dict[str, Any]], current: list[Record]) -> None:
    results = of_type(current, CMVLoadMeasured)
    assays = {(r.assay, r.specimen, r.lloq_iu_ml) for r in results}
    assert assays == {
        ("COBAS AmpliPrep/COBAS TaqMan CMV Test", "plasma", 137.0),
        ("Abbott RealTime CMV", "plasma", 31.2),
        ("artus CMV QS-RGQ", "whole_blood", 150.0),
    }
    kinds = Counter(r.result for r in results)
    assert set(kinds) == {"not_detected", "below_lloq", "quantified", "above_uloq"}
    assert kinds["above_uloq"] <= 10  # rare
    for r in results:
        if r.result == "quantified":
            assert r.value_iu_ml is not None and r.value_iu_ml >= r.lloq_iu_ml
    groups = by_participant(current)
    for history in groups.values():
        if not of_type(history, ParticipantEnrolled):
            continue
        screening = of_type(history, ParticipantScreened)[0]
        baseline = [r for r in of_type(history, CMVLoadMeasured) if r.effective == screening.effective]
        assert len(baseline) == 1 and baseline[0].result == "quantified"
        assert 2e2 <= baseline[0].value_iu_ml <= 5e5
        infusions = of_type(history, MSCInfused)
        if infusions:
            day1 = infusions[0].effective
            weekly = [r for r in of_type(history, CMVLoadMeasured) if r.effective >= day1]
            assert min(r.effective for r in weekly) == day1  # a sample on day 1

    # late-entered results: a line after a later-dated result of the same participant
    latest: dict[str, str] = {}
    late = 0
    for line in trial:
        if line["type"] == "CMVLoadMeasured":
            if line["effective"] < latest.get(line["participant"], ""):
                late += 1
            latest[line["participant"]] = max(latest.get(line["participant"], ""), line["effective"])
    assert late >= 2


def test_remission_rates_recurrences_and_second_courses(current: list[Record]) -> None:
    infused = responders = after_second_course = recurrences = 0
    for history in by_participant(current).values():
        infusions = sorted(of_type(history, MSCInfused), key=lambda i: i.effective)
        if not infusions:
            continue
        infused += 1
        window_end = infusions[0].effective + dt.timedelta(days=PROTOCOL.follow_up.window_days - 1)
        cr = cr_date(history)
        if cr is None or cr > window_end:
            continue
        responders += 1
        if len(infusions) == 2:
            after_second_course += 1
        if any(r.result in POSITIVE and r.effective > cr for r in of_type(history, CMVLoadMeasured)):
            recurrences += 1
    assert 0.70 <= responders / infused <= 0.85
    assert after_second_course >= 20
    assert 2 <= recurrences <= 12
    assert infused - responders >= 10  # non-responders, deaths, withdrawals


def test_cmv_disease(current: list[Record]) -> None:
    screenings = of_type(current, ParticipantScreened)
    disease = [s for s in screenings if s.refractory_cmv == "disease"]
    assert 0.15 <= len(disease) / len(screenings) <= 0.25
    groups = by_participant(current)
    resolved = enrolled = 0
    for screening in disease:
        history = groups[screening.participant]
        if not of_type(history, ParticipantEnrolled):
            continue
        enrolled += 1
        assessments = of_type(history, CMVDiseaseAssessed)
        assert assessments[0].status == "active"
        assert assessments[0].effective == screening.effective
        assert assessments[0].organ
        if any(a.status == "resolved" for a in assessments):
            resolved += 1
    assert resolved >= enrolled / 2
    without = {s.participant for s in screenings if s.refractory_cmv != "disease"}
    assert not any(r.participant in without for r in of_type(current, CMVDiseaseAssessed))


# -- adverse events (SPEC section 2) ---------------------------------------------------


def test_adverse_events_cover_every_category_grade_and_rule(current: list[Record]) -> None:
    reports = of_type(current, AdverseEventReported)
    assert {r.category for r in reports} == set(CATEGORIES)
    assert {r.grade for r in reports} == {1, 2, 3, 4, 5}
    assert any(r.serious for r in reports) and any(not r.serious for r in reports)
    assert any(r.grade == 3 and not r.serious for r in reports)
    causality = {r.causality for r in reports}
    assert {"probable", "possible", "unlikely"} <= causality
    for r in reports:
        if r.serious:
            assert r.criteria
        else:
            assert r.criteria == []
        if r.grade == 5:
            assert r.serious and "death" in r.criteria
    for participant, history in by_participant(current).items():
        ids = [r.ae_id for r in of_type(history, AdverseEventReported)]
        assert len(ids) == len(set(ids)), participant
        infusions = of_type(history, MSCInfused)
        if ids:
            assert infusions and all(
                r.effective >= min(i.effective for i in infusions)
                for r in of_type(history, AdverseEventReported)
            )
        for ae in ae_state(history).values():  # updated values stay valid
            if ae["serious"]:
                assert ae["criteria"]
            if ae["grade"] == 5:
                assert ae["serious"] and "death" in ae["criteria"]
    updates = of_type(current, AdverseEventUpdated)
    assert any(u.outcome == "recovered" and u.resolved_date for u in updates)
    reports_by_key = {(r.participant, r.ae_id): r for r in reports}
    worsened = [
        u for u in updates if u.grade is not None and u.grade > reports_by_key[u.participant, u.ae_id].grade
    ]
    assert worsened


def test_a_serious_adverse_event_is_reported_late(trial: list[dict[str, Any]]) -> None:
    limit = dt.timedelta(hours=PROTOCOL.safety.sae_report_hours)
    serious = [line for line in trial if line["type"] == "AdverseEventReported" and line["serious"]]
    delays = [entered(line) - dt.datetime.fromisoformat(line["aware_at"]) for line in serious]
    assert all(delay > dt.timedelta(0) for delay in delays)
    late = [delay for delay in delays if delay > limit]
    assert 1 <= len(late) <= 3
    assert len(serious) >= 20


def test_deaths_have_a_grade_5_event_and_withdrawals_exist(current: list[Record]) -> None:
    groups = by_participant(current)
    deaths = of_type(current, ParticipantDied)
    assert len(deaths) >= 3
    for death in deaths:
        history = groups[death.participant]
        grades = [ae["grade"] for ae in ae_state(history).values()]
        assert 5 in grades, death.participant
        assert death.cause
    assert len(of_type(current, ParticipantWithdrew)) >= 2
    fatal_after_update = [u for u in of_type(current, AdverseEventUpdated) if u.grade == 5]
    assert fatal_after_update  # a grade 4 SAE that became fatal


# -- corrections and voids (SPEC section 5) ----------------------------------------------


def test_corrections_and_voids_name_earlier_lines(records: list[Record]) -> None:
    by_id: dict[str, Record] = {}
    corrected_fields: set[str] = set()
    voided_types: set[str] = set()
    corrections = voids = 0
    for record in records:
        if isinstance(record, EventCorrected):
            corrections += 1
            target = by_id[record.target]
            apply_changes(target, record.changes)  # still valid
            corrected_fields |= set(record.changes)
            assert record.reason
        elif isinstance(record, EventVoided):
            voids += 1
            voided_types.add(by_id[record.target].type)
            assert record.reason
        assert record.id is not None
        by_id[record.id] = record
    assert corrections >= 3 and voids >= 2
    assert {"weight_kg", "value_iu_ml"} <= corrected_fields
    assert "CMVLoadMeasured" in voided_types


# -- output, other arguments, speed -----------------------------------------------------


def test_write_jsonl_to_stream_and_path(trial: list[dict[str, Any]], tmp_path: Any) -> None:
    stream = io.StringIO()
    assert write_jsonl(trial, stream) == len(trial)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == len(trial)
    assert [json.loads(row) for row in text.splitlines()] == trial
    path = tmp_path / "demo.jsonl"
    assert write_jsonl(trial[:10], path) == 10
    assert [decode_line(row).id for row in path.read_bytes().splitlines()] == [
        line["id"] for line in trial[:10]
    ]


def test_small_trials_and_other_protocols() -> None:
    assert generate_trial(participants=0) == []
    for n in (1, 5):
        lines = generate_trial(participants=n, seed=3)
        assert sum(line["type"] == "ParticipantEnrolled" for line in lines) == n
        for line in lines:
            decode_line(json.dumps(line))
    with pytest.raises(ValueError):
        generate_trial(participants=-1)
    strict = msgspec.structs.replace(
        PROTOCOL,
        eligibility=msgspec.structs.replace(PROTOCOL.eligibility, age_max=55, hr=(60, 95)),
    )
    records = [decode_line(json.dumps(line)) for line in generate_trial(60, 1, strict)]
    screenings = {s.participant: s for s in of_type(records, ParticipantScreened)}
    for enrollment in of_type(records, ParticipantEnrolled):
        failed = failed_criteria(screenings[enrollment.participant], enrollment.effective, strict)
        assert bool(failed) == (enrollment.deviation is not None)


def test_a_thousand_participants_are_generated_whole() -> None:
    lines = generate_trial(participants=1000, seed=11)
    assert sum(line["type"] == "ParticipantEnrolled" for line in lines) == 1000
    assert len({line["id"] for line in lines}) == len(lines)
    records = [decode_line(json.dumps(line)) for line in lines]
    assert {r.category for r in of_type(records, AdverseEventReported)} == set(CATEGORIES)
