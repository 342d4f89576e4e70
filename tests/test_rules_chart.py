"""The chart's type index (issue 14): what the rules read from it equals a scan of the whole chart.

The write rules ask a participant's chart for the screening, the enrollment, the
infusions, the AEs before each record; the chart keeps its records indexed by
type so that the answer does not cost a scan of the history.  Whatever the
sequence of records entered, corrected (same key, same type) and voided (key
removed), ``of_type`` and ``first`` answer exactly what a scan in chart order does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.events import ClinicalRecord, CMVLoadMeasured, ParticipantScreened
from ledger.domain.protocol import load_protocol
from ledger.domain.rules.ordering import Chart, check_clinical
from tests.builders import D0, Ledger, day

# Records of every clinical type the rules ask for, two of each.
_LEDGER = Ledger()
_LEDGER.treated()
for _n in range(2):
    _LEDGER.cmv(on=day(10 + _n))
    _LEDGER.disease(on=day(12 + _n))
    _LEDGER.ae(ae_id=f"AE-{_n}", on=day(14 + _n))
    _LEDGER.ae_update(ae_id=f"AE-{_n}", on=day(16 + _n))
    _LEDGER.infuse(on=day(20 + _n), course=2 + _n)
_LEDGER.withdraw(on=day(30))
_LEDGER.death(on=day(31))
_LEDGER.screen(participant="NFH-002")
_LEDGER.enroll(participant="NFH-002", effective=D0)
RECORDS: list[ClinicalRecord] = [e.record for e in _LEDGER.entries if isinstance(e.record, ClinicalRecord)]
KINDS: list[type] = [*sorted({type(r) for r in RECORDS}, key=lambda t: t.__name__), ClinicalRecord]

# One step: enter a record under a new key, correct a key (same type), or void a key.
_steps = st.lists(
    st.tuples(st.sampled_from(["enter", "correct", "void"]), st.integers(0, 40), st.sampled_from(RECORDS)),
    max_size=40,
)


def _scan(chart: Chart, kind: type) -> list[Any]:
    return [r for r in chart.records.values() if isinstance(r, kind)]


@settings(max_examples=200, deadline=None)
@given(_steps, st.booleans())
def test_the_type_index_answers_as_a_scan(
    steps: list[tuple[str, int, ClinicalRecord]], ask_early: bool
) -> None:
    chart = Chart()
    if ask_early:  # groups asked for before any record of their type exists must still fill
        for kind in KINDS:
            chart.of_type(kind)
    for number, (step, pick, record) in enumerate(steps):
        keys = list(chart.records)
        if step == "enter" or not keys:
            chart.records[f"e{number}"] = record
        elif step == "correct":
            key = keys[pick % len(keys)]
            same_type = [r for r in RECORDS if type(r) is type(chart.records[key])]
            chart.records[key] = same_type[pick % len(same_type)]
        else:
            del chart.records[keys[pick % len(keys)]]
        for kind in KINDS:
            assert chart.of_type(kind) == _scan(chart, kind)
            assert chart.first(kind) == next(iter(_scan(chart, kind)), None)


def test_a_chart_given_a_plain_dict_is_indexed() -> None:
    records = {f"e{n}": r for n, r in enumerate(RECORDS)}
    chart = Chart(records)
    for kind in KINDS:
        assert chart.of_type(kind) == _scan(chart, kind)
    assert list(chart.records) == list(records)


def test_checking_a_record_reads_the_index_not_the_history() -> None:
    """``check_clinical`` of a lab value on a long chart never walks the chart's records."""
    ledger = Ledger()
    ledger.treated()
    for n in range(300):
        ledger.cmv(on=day(10 + n))
    chart = Chart({e.record.id or "": e.record for e in ledger.entries})  # type: ignore[misc]

    def walked(*_: object) -> Any:
        raise AssertionError("the rule scanned the whole chart")

    chart.records.values = walked  # type: ignore[method-assign]
    chart.records.items = walked  # type: ignore[method-assign]
    record = ledger.cmv(on=day(400)).record
    assert isinstance(record, ClinicalRecord)
    check_clinical(chart, record, load_protocol(), dt.datetime(2016, 6, 1, tzinfo=dt.UTC))
    assert chart.first(ParticipantScreened) is not None
    assert len(chart.of_type(CMVLoadMeasured)) == 300
