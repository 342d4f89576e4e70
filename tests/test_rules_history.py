"""Folding corrections, voids and AE updates (SPEC sections 3, 5 and 6)."""

from __future__ import annotations

import datetime as dt

from ledger.domain.events import ClinicalRecord, CMVLoadMeasured, ParticipantScreened, Record
from ledger.domain.rules.corrections import fold
from ledger.domain.rules.safety import adverse_events
from tests.builders import D0, Ledger, day


def test_corrections_stack_in_ledger_order_and_keep_the_original() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3), result="not_detected")
    ledger.correct(sample, result="quantified", value_iu_ml=900.0)
    ledger.correct(sample, value_iu_ml=1200.0)
    ledger.correct(sample, effective=day(4))
    [current] = fold(ledger.entries)["NFH-001"].of_type(CMVLoadMeasured)
    record = current.record
    assert (record.result, record.value_iu_ml, record.effective) == ("quantified", 1200.0, day(4))
    assert current.original == sample.record
    assert current.position == sample.position
    assert current.recorded_at == sample.recorded_at
    assert current.id == sample.record.id
    assert len(current.versions) == 4 and current.corrected


def test_voided_event_and_everything_aimed_at_it_count_nowhere() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3))
    ledger.correct(sample, result="below_lloq")
    ledger.void(sample)
    ledger.correct(sample, result="above_uloq")  # meaningless after the void
    history = fold(ledger.entries)["NFH-001"]
    assert history.of_type(CMVLoadMeasured) == []


def test_void_of_a_correction_undoes_it() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3))
    wrong = ledger.correct(sample, result="below_lloq")
    ledger.void(wrong)
    [current] = fold(ledger.entries)["NFH-001"].of_type(CMVLoadMeasured)
    assert current.record == sample.record and not current.corrected


def test_known_at_prefix_sees_only_the_corrections_recorded_by_then() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3))
    cutoff = ledger.clock
    ledger.correct(sample, result="below_lloq")
    earlier = fold(e for e in ledger.entries if e.recorded_at <= cutoff)
    assert earlier["NFH-001"].of_type(CMVLoadMeasured)[0].record.result == "not_detected"
    assert fold(ledger.entries)["NFH-001"].of_type(CMVLoadMeasured)[0].record.result == "below_lloq"


def test_fold_ignores_input_order() -> None:
    ledger = Ledger()
    ledger.screen()
    sample = ledger.cmv(on=day(3))
    ledger.correct(sample, result="below_lloq")
    ledger.correct(sample, result="quantified", value_iu_ml=10.0)
    assert fold(reversed(ledger.entries)) == fold(ledger.entries)


def test_as_of_orders_by_effective_then_position() -> None:
    ledger = Ledger()
    ledger.screen()
    later = ledger.cmv(on=day(5))
    earlier = ledger.cmv(on=day(2))
    same_day = ledger.cmv(on=day(5), result="below_lloq")
    history = fold(ledger.entries)["NFH-001"]
    assert [e.id for e in history.as_of(CMVLoadMeasured, day(5))] == [
        earlier.record.id,
        later.record.id,
        same_day.record.id,
    ]
    assert [e.id for e in history.as_of(CMVLoadMeasured, day(4))] == [earlier.record.id]


def test_as_of_a_kind_of_record_takes_every_type_of_it_in_clinical_order() -> None:
    """Asked for a base type (every clinical record), ``as_of`` merges its types in clinical order."""
    ledger = Ledger()
    screening = ledger.screen()
    later = ledger.cmv(on=day(5))
    infusion = ledger.infuse(on=day(1))
    same_day = ledger.disease(on=day(5))
    ledger.cmv(on=day(9))
    history = fold(ledger.entries)["NFH-001"]
    assert [e.id for e in history.as_of(ClinicalRecord, day(5))] == [
        screening.record.id,
        infusion.record.id,
        later.record.id,
        same_day.record.id,
    ]
    assert history.as_of(Record, day(0)) == history.as_of(ParticipantScreened, day(0))


def test_adverse_event_updates_by_effective_date() -> None:
    ledger = Ledger()
    ledger.screen()
    ledger.ae(on=D0, ae_id="AE1", grade=2)
    # Recorded out of effective order: the day-10 update is applied after the day-5 one.
    ledger.ae_update(on=day(10), ae_id="AE1", grade=4, outcome="recovering")
    ledger.ae_update(on=day(5), ae_id="AE1", grade=3, outcome="not_recovered")
    voided = ledger.ae_update(on=day(6), ae_id="AE1", grade=5)
    ledger.void(voided)
    ledger.ae_update(on=day(7), ae_id="OTHER", grade=1)  # no such AE: ignored
    history = fold(ledger.entries)["NFH-001"]
    [on_4] = adverse_events(history, day(4))
    assert (on_4.grade, on_4.outcome, on_4.updates) == (2, None, ())
    [on_9] = adverse_events(history, day(9))
    assert (on_9.grade, on_9.outcome) == (3, "not_recovered")
    [on_10] = adverse_events(history, day(10))
    assert (on_10.grade, on_10.outcome, len(on_10.updates)) == (4, "recovering", 2)
    assert adverse_events(history, D0 - dt.timedelta(days=1)) == []


def test_update_corrected_and_downgrade_clears_criteria() -> None:
    ledger = Ledger()
    ledger.screen()
    ledger.ae(on=D0, ae_id="AE1", serious=True, grade=3)
    update = ledger.ae_update(on=day(3), ae_id="AE1", grade=2)
    ledger.correct(update, serious=False)
    [ae] = adverse_events(fold(ledger.entries)["NFH-001"], day(3))
    assert (ae.grade, ae.serious, ae.criteria) == (2, False, ())
