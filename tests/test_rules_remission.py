"""Complete remission and recurrence (SPEC section 2), on folded ledger entries."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.entry import Entry
from ledger.domain.events import CMVLoadMeasured
from ledger.domain.protocol import Protocol, Remission, load_protocol
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.remission import (
    RemissionOutcome,
    Sample,
    participant_remission,
    virological_cr_date,
)
from ledger.domain.rules.status import summarise
from tests.builders import D0, Ledger, day, remission_days

PROTOCOL = load_protocol()
LATE = day(400)


def outcome(
    ledger: Ledger, as_of: dt.date = LATE, participant: str = "NFH-001", protocol: Protocol = PROTOCOL
) -> RemissionOutcome:
    history = fold(ledger.entries)[participant]
    return participant_remission(history, D0, as_of, protocol)


def treated(**screening: object) -> Ledger:
    ledger = Ledger()
    ledger.treated(**screening)
    return ledger


@pytest.mark.parametrize("shift", [0, 1])
def test_the_protocols_samples_and_gap_complete_remission(protocol: Protocol, shift: int) -> None:
    """The shortest series completes remission on its last day; the first sample one day
    later (the gap one day short) does not."""
    days = remission_days(20, protocol.remission)
    ledger = treated()
    for number in [days[0] + shift, *days[1:]]:
        ledger.cmv(on=day(number))
    expected = day(20) if shift == 0 else None
    assert outcome(ledger, protocol=protocol).cr_date == expected


def test_one_sample_short_is_no_remission(protocol: Protocol) -> None:
    ledger = treated()
    for number in remission_days(20, protocol.remission)[1:]:
        ledger.cmv(on=day(number))
    assert outcome(ledger, protocol=protocol).cr_date is None


def test_two_negatives_five_days_apart() -> None:
    ledger = treated()
    ledger.cmv(on=day(3), result="not_detected")
    ledger.cmv(on=day(8), result="below_lloq")
    assert outcome(ledger).cr_date == day(8)
    assert outcome(ledger).virological_cr == day(8)


def test_four_days_apart_is_not_enough() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(7))
    assert outcome(ledger).cr_date is None
    # A third negative completes the pair with the first one; the middle one is fine.
    ledger.cmv(on=day(8))
    assert outcome(ledger).cr_date == day(8)


def test_positive_between_negatives_breaks_the_pair() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(5), result="quantified")
    ledger.cmv(on=day(8))
    assert outcome(ledger).cr_date is None
    ledger.cmv(on=day(12))
    assert outcome(ledger).cr_date is None  # 4 days after the day-8 negative
    ledger.cmv(on=day(13))
    assert outcome(ledger).cr_date == day(13)


def test_above_uloq_also_breaks_the_pair() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(5), result="above_uloq")
    ledger.cmv(on=day(8))
    assert outcome(ledger).cr_date is None


def test_samples_before_day_1_do_not_count() -> None:
    ledger = treated()
    ledger.cmv(on=day(-5))
    ledger.cmv(on=day(4))
    assert outcome(ledger).cr_date is None
    ledger.cmv(on=day(9))
    assert outcome(ledger).cr_date == day(9)


def test_same_date_results_ordered_by_position() -> None:
    # Negative then positive on day 8 (by recording order): the pair closes on day 8
    # before the positive; the positive is not after the CR date, so no recurrence.
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    ledger.cmv(on=day(8), result="quantified")
    assert outcome(ledger) == RemissionOutcome(day(8), None, day(8), None)
    # Positive then negative on day 8: the positive breaks the run.
    other = treated()
    other.cmv(on=day(3))
    other.cmv(on=day(8), result="quantified")
    other.cmv(on=day(8))
    assert outcome(other).cr_date is None


def test_late_entered_earlier_sample_gains_and_loses_cr_retroactively() -> None:
    ledger = treated()
    ledger.cmv(on=day(10))
    assert outcome(ledger).cr_date is None
    # Recorded later, sampled earlier: CR on day 10 gained retroactively.
    ledger.cmv(on=day(4))
    assert outcome(ledger).cr_date == day(10)
    # Recorded even later: a positive on day 7 takes it away again.
    ledger.cmv(on=day(7), result="quantified")
    assert outcome(ledger).cr_date is None
    # As known before the positive was recorded, CR held on day 10.
    known = fold(ledger.entries[:-1])["NFH-001"]
    assert participant_remission(known, D0, LATE, PROTOCOL).cr_date == day(10)


def test_correction_turns_a_negative_into_a_positive() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    middle = ledger.cmv(on=day(6))
    ledger.cmv(on=day(9))
    assert outcome(ledger).cr_date == day(9)  # day 9 pairs with day 3
    ledger.correct(middle, result="quantified", value_iu_ml=2500.0)
    assert outcome(ledger).cr_date is None


def test_correction_of_the_sample_date() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    second = ledger.cmv(on=day(7))
    assert outcome(ledger).cr_date is None
    ledger.correct(second, effective=day(8))
    assert outcome(ledger).cr_date == day(8)


def test_void_removes_a_result() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    positive = ledger.cmv(on=day(5), result="quantified")
    ledger.cmv(on=day(8))
    assert outcome(ledger).cr_date is None
    ledger.void(positive)
    assert outcome(ledger).cr_date == day(8)


def test_void_of_a_negative_loses_cr() -> None:
    ledger = treated()
    first = ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    ledger.void(first)
    assert outcome(ledger).cr_date is None


def test_disease_needs_resolution_later_resolution_sets_cr_date() -> None:
    ledger = treated(refractory_cmv="disease")
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    assert outcome(ledger) == RemissionOutcome(day(8), None, None, None)
    ledger.disease(on=day(-2), status="resolved")  # before day 1: does not count
    ledger.disease(on=day(12), status="active")
    assert outcome(ledger).cr_date is None
    ledger.disease(on=day(20), status="resolved")
    ledger.disease(on=day(25), status="resolved")
    assert outcome(ledger) == RemissionOutcome(day(8), day(20), day(20), None)


def test_disease_resolved_before_virological_cr() -> None:
    ledger = treated(refractory_cmv="disease")
    ledger.disease(on=day(2), status="resolved")
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    assert outcome(ledger) == RemissionOutcome(day(8), day(2), day(8), None)


def test_infection_participant_ignores_disease_assessments() -> None:
    ledger = treated(refractory_cmv="infection")
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    assert outcome(ledger).cr_date == day(8)
    assert outcome(ledger).resolution is None


def test_recurrence_after_cr_date() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    ledger.cmv(on=day(30), result="quantified")
    ledger.cmv(on=day(40))
    ledger.cmv(on=day(50))
    assert outcome(ledger) == RemissionOutcome(day(8), None, day(8), day(30))
    # Not yet on day 29.
    assert outcome(ledger, as_of=day(29)).recurrence is None


def test_recurrence_is_relative_to_the_combined_cr_date() -> None:
    # Positive after virological CR but before disease resolution: no CR from that pair;
    # the next qualifying pair counts.
    ledger = treated(refractory_cmv="disease")
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    ledger.cmv(on=day(10), result="quantified")
    ledger.disease(on=day(12))
    result = outcome(ledger)
    assert result.cr_date == day(12)
    assert result.recurrence is None  # the positive on day 10 is not after the CR date


def test_only_results_effective_on_or_before_as_of_count() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    assert outcome(ledger, as_of=day(7)).cr_date is None
    assert outcome(ledger, as_of=day(8)).cr_date == day(8)


def test_no_infusion_no_remission() -> None:
    ledger = Ledger()
    ledger.screen()
    ledger.enroll()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    history = fold(ledger.entries)["NFH-001"]
    assert participant_remission(history, None, LATE, PROTOCOL).cr_date is None
    assert summarise(history, LATE, PROTOCOL).cr_date is None  # type: ignore[union-attr]


def test_sample_count_is_a_parameter() -> None:
    samples = [Sample(day(3), 1, "not_detected"), Sample(day(8), 2, "not_detected")]
    two, three = Remission(samples=2, min_gap_days=5), Remission(samples=3, min_gap_days=5)
    assert virological_cr_date(samples, D0, two) == day(8)
    assert virological_cr_date(samples, D0, three) is None
    samples.append(Sample(day(5), 3, "below_lloq"))
    assert virological_cr_date(samples, D0, three) == day(8)
    # Three negatives all within the gap do not suffice; a later one does.
    close = [Sample(day(d), d, "not_detected") for d in (3, 4, 5)]
    assert virological_cr_date(close, D0, three) is None
    close.append(Sample(day(8), 9, "not_detected"))
    assert virological_cr_date(close, D0, three) == day(8)
    assert virological_cr_date(close, D0, Remission(samples=2, min_gap_days=7)) is None


def test_protocol_parameters_flow_through() -> None:
    ledger = treated()
    ledger.cmv(on=day(3))
    ledger.cmv(on=day(8))
    history = fold(ledger.entries)["NFH-001"]
    strict = msgspec.structs.replace(PROTOCOL, remission=Remission(samples=2, min_gap_days=6))
    assert participant_remission(history, D0, LATE, strict).cr_date is None


# -- properties -----------------------------------------------------------------

RESULTS = st.sampled_from(["not_detected", "below_lloq", "quantified", "above_uloq"])


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.integers(min_value=-3, max_value=40), RESULTS, min_size=1, max_size=12),
    st.randoms(use_true_random=False),
)
def test_cr_date_does_not_depend_on_recording_order(by_day: dict[int, str], rng: object) -> None:
    """Results of different dates: any recording order gives the same remission."""
    plan = list(by_day.items())
    shuffled = plan[:]
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    outcomes = []
    for order in (plan, shuffled):
        ledger = treated()
        for offset, result in order:
            ledger.cmv(on=day(offset), result=result)
        outcomes.append(outcome(ledger))
    assert outcomes[0] == outcomes[1]
    # And it agrees with a direct reading of the rule for two samples.
    assert outcomes[0].virological_cr == _brute_force(by_day)


def _brute_force(by_day: dict[int, str]) -> dt.date | None:
    """Earliest j with a negative i <= j - 5, both >= day 1, no positive in [i, j]."""
    days = sorted(d for d in by_day if d >= 1)
    for j in days:
        if by_day[j] not in ("not_detected", "below_lloq"):
            continue
        for i in days:
            if i > j - 5 or by_day[i] not in ("not_detected", "below_lloq"):
                continue
            if all(by_day[k] in ("not_detected", "below_lloq") for k in days if i <= k <= j):
                return day(j)
    return None


def _samples(entries: list[Entry]) -> list[Entry]:
    return [entry for entry in entries if isinstance(entry.record, CMVLoadMeasured)]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(min_value=1, max_value=30), RESULTS), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=7), max_size=6),
)
def test_noop_corrections_change_nothing(plan: list[tuple[int, str]], targets: list[int]) -> None:
    """Re-applying a result's own current values as a correction is a no-op for fold()."""
    ledger = treated()
    for offset, result in plan:
        ledger.cmv(on=day(offset), result=result)
    before = fold(ledger.entries)
    samples = _samples(ledger.entries)
    for index in targets:
        target = samples[index % len(samples)]
        ledger.correct(target, result=target.record.result, effective=target.record.effective)
    after = fold(ledger.entries)
    assert [e.record for e in after["NFH-001"].events] == [e.record for e in before["NFH-001"].events]
    assert outcome(ledger) == participant_remission(before["NFH-001"], D0, LATE, PROTOCOL)
