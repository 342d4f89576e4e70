"""What the fold ignores, and that it ignores only that (SPEC sections 5 and 6; issue 16).

Each corrupt or meaningless entry (a correction of an unknown or non-amendable
event, an invalid correction, a void of an unknown id, an id stored twice) is
followed by valid ones, which must still count.
"""

from __future__ import annotations

from ledger.domain.events import (
    CMVLoadMeasured,
    EnrollmentRefused,
    EventCorrected,
    EventVoided,
    MSCInfused,
    lenient,
)
from ledger.domain.rules.corrections import fold
from tests.builders import D0, Ledger, day


def _samples(ledger: Ledger) -> list[tuple[str, object]]:
    return [
        (event.id, event.record.result) for event in fold(ledger.entries)["NFH-001"].of_type(CMVLoadMeasured)
    ]  # type: ignore[attr-defined]


def test_one_correction_makes_an_event_corrected() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3))
    [before] = fold(ledger.entries)["NFH-001"].of_type(CMVLoadMeasured)
    ledger.correct(sample, result="below_lloq")
    [after] = fold(ledger.entries)["NFH-001"].of_type(CMVLoadMeasured)
    assert (before.corrected, after.corrected, len(after.versions)) == (False, True, 2)


def test_corrections_of_unknown_or_non_amendable_events_are_ignored_and_the_rest_applied() -> None:
    ledger = Ledger()
    ledger.screen()
    refusal = ledger.add(EnrollmentRefused, "NFH-001", effective=D0, weight_kg=60.0, criteria=["age"])
    sample = ledger.cmv(on=day(3))
    ledger.add(EventVoided, "NFH-001", target="NFH-404", reason="entered in error")
    ledger.void(refusal)
    ledger.correct(sample, result="quantified", value_iu_ml=900.0)
    ledger.add(EventCorrected, "NFH-001", target="NFH-404", changes={"result": "below_lloq"}, reason="typo")
    ledger.add(
        EventCorrected, "NFH-001", target=refusal.record.id, changes={"weight_kg": 61.0}, reason="typo"
    )
    ledger.correct(sample, value_iu_ml=1200.0)
    history = fold(ledger.entries)["NFH-001"]
    [current] = history.of_type(CMVLoadMeasured)
    assert (current.record.result, current.record.value_iu_ml, len(current.versions)) == (
        "quantified",
        1200.0,
        3,
    )  # type: ignore[attr-defined]
    [kept] = history.of_type(EnrollmentRefused)
    assert kept.record == refusal.record and not kept.corrected


def test_an_invalid_correction_is_ignored_and_a_later_one_applied() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3))
    with lenient():
        ledger.correct(sample, lloq_iu_ml="a lot")  # the wrong type: never readable
    ledger.correct(sample, result="below_lloq")
    assert _samples(ledger) == [(sample.record.id, "below_lloq")]


def test_a_stored_correction_is_read_even_where_a_constraint_tightened_since_refuses_it() -> None:
    ledger = Ledger()
    ledger.treated()
    infusion = ledger.entries[-1]
    with lenient():
        ledger.correct(infusion, cells_per_kg=-1.0)
    [current] = fold(ledger.entries)["NFH-001"].of_type(MSCInfused)
    assert current.record.cells_per_kg == -1.0  # type: ignore[attr-defined]


def test_events_after_a_correction_a_void_and_a_voided_event_all_count() -> None:
    ledger = Ledger()
    ledger.screen()
    first = ledger.cmv(on=day(3))
    ledger.void(first)
    second = ledger.cmv(on=day(4))
    ledger.correct(second, result="below_lloq")
    third = ledger.cmv(on=day(5))
    assert _samples(ledger) == [(second.record.id, "below_lloq"), (third.record.id, "not_detected")]


def test_an_id_stored_twice_counts_once_the_first() -> None:
    ledger = Ledger()
    ledger.screen()
    first = ledger.cmv(on=day(3), id="CMV-1")
    ledger.cmv(on=day(4), id="CMV-1", result="quantified", value_iu_ml=900.0)
    later = ledger.cmv(on=day(5))
    assert _samples(ledger) == [("CMV-1", "not_detected"), (later.record.id, "not_detected")]
    assert first.record.id == "CMV-1"
