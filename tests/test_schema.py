"""SPEC section 6: every line is validated at the edge; errors name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.events import RECORD_TYPES, InvalidRecord, apply_changes, decode_line
from tests import lines as L


def problem(line: dict[str, Any] | str) -> str:
    raw = line if isinstance(line, str) else json.dumps(line)
    with pytest.raises(InvalidRecord) as caught:
        decode_line(raw)
    return str(caught.value)


VALID = [
    L.screening(),
    L.enrollment(),
    L.infusion(),
    L.cmv(),
    L.cmv(result="not_detected"),
    L.disease(),
    L.adverse_event(),
    L.adverse_event(grade=5, serious=True, criteria=["death"]),
    L.ae_update(),
    L.withdrawal(),
    L.death(),
    L.death(cause="septic shock"),
    L.correction("NFH-001-enr", {"weight_kg": 60}),
    L.void("NFH-001-enr"),
]


@pytest.mark.parametrize("line", VALID, ids=lambda d: d["type"])
def test_valid_lines_decode_to_their_type(line: dict[str, Any]) -> None:
    record = decode_line(json.dumps(line))
    assert record.type == line["type"]
    assert isinstance(record, RECORD_TYPES[line["type"]])


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ({**L.screening(), "name": "Li Wei"}, "name", "unknown field"),
        ({**L.screening(), "phone": "138"}, "phone", "unknown field"),
        ({k: v for k, v in L.screening().items() if k != "consent_date"}, "consent_date", "required"),
        (L.screening(sex="X"), "sex", "expected one of M, F, U"),
        (L.screening(age_years="forty"), "age_years", "expected `int`"),
        (L.screening(age_years=-1), "age_years", ">= 0"),
        (L.screening(effective="2014-02-30"), "effective", "invalid"),
        (L.screening(effective="06/01/2014"), "effective", "invalid"),
        (L.screening(participant="nfh-1"), "participant", "regex"),
        (L.screening(participant="AMMS-001", site="NFH"), "participant", "must start with its site code"),
        (L.screening(refractory_cmv="maybe"), "refractory_cmv", "expected"),
        (L.screening(consent_by="doctor"), "consent_by", "expected"),
        (L.enrollment(weight_kg=0), "weight_kg", "> 0"),
        (L.enrollment(weight_kg=-3), "weight_kg", "> 0"),
        (L.infusion(cells_per_kg=0), "cells_per_kg", "> 0"),
        (L.infusion(course=0), "course", ">= 1"),
        (L.cmv(specimen="urine"), "specimen", "expected"),
        (L.cmv(result="quantified", value_iu_ml=None), "value_iu_ml", "required when result is 'quantified'"),
        (L.cmv(result="not_detected", value_iu_ml=20), "value_iu_ml", "only allowed"),
        (L.cmv(lloq_iu_ml=0), "lloq_iu_ml", "> 0"),
        (L.disease(status="better"), "status", "expected"),
        (L.adverse_event(grade=6), "grade", "<= 5"),
        (L.adverse_event(grade=0), "grade", ">= 1"),
        (L.adverse_event(category="gvhd"), "category", "expected"),
        (L.adverse_event(serious=True, criteria=[]), "criteria", "at least one seriousness criterion"),
        (L.adverse_event(serious=False, criteria=["death"]), "criteria", "must be empty"),
        (L.adverse_event(grade=5, serious=True, criteria=["hospitalisation"]), "grade", "'death'"),
        (L.adverse_event(grade=5, serious=False, criteria=[]), "grade", "'death'"),
        (L.adverse_event(serious=True, criteria=["bad"]), "criteria[0]", "expected"),
        (L.adverse_event(causality="likely"), "causality", "expected"),
        (L.adverse_event(aware_at="2014-01-12T09:30:00"), "aware_at", "timezone"),
        (L.adverse_event(term="x" * 501), "term", "length <= 500"),
        (L.adverse_event(term=""), "term", "length >= 1"),
        (L.ae_update(outcome="dead"), "outcome", "expected"),
        (L.withdrawal(reason=""), "reason", "length >= 1"),
        (L.correction("NFH-001-enr", {}), "changes", "at least one field"),
        (
            L.correction("NFH-001-enr", {"participant": "NFH-002"}),
            "changes.participant",
            "cannot be corrected",
        ),
        (L.correction("NFH-001-enr", {"type": "MSCInfused"}), "changes.type", "cannot be corrected"),
        ({k: v for k, v in L.correction("x", {"a": 1}).items() if k != "reason"}, "reason", "required"),
        ({**L.cmv(), "entered_at": "yesterday"}, "entered_at", "invalid"),
        ({**L.cmv(), "user": "bad user!"}, "user", "regex"),
        ({**L.cmv(), "type": "CMVLoad"}, "type", "invalid value"),
    ],
)
def test_bad_line_names_the_field_and_the_problem(line: dict[str, Any], field: str, words: str) -> None:
    message = problem(line)
    assert message.startswith(f"{field}:"), message
    assert words in message, message


@pytest.mark.parametrize(
    "raw", ["", "not json", "[1, 2]", '{"type": 3}', '{"participant": "NFH-001"}', "\xff"]
)
def test_garbage_is_an_error_not_a_crash(raw: str) -> None:
    assert problem(raw)


def test_correction_result_must_still_be_valid() -> None:
    record = decode_line(json.dumps(L.cmv(result="not_detected")))
    assert apply_changes(record, {"result": "quantified", "value_iu_ml": 300}).value_iu_ml == 300
    with pytest.raises(InvalidRecord, match="value_iu_ml: is required"):
        apply_changes(record, {"result": "quantified"})
    with pytest.raises(InvalidRecord, match=r"^specimen:"):
        apply_changes(record, {"specimen": "saliva"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@given(
    template=st.sampled_from(VALID),
    field=st.text(min_size=1, max_size=15),
    value=json_values,
)
def test_any_mutated_field_either_decodes_validly_or_names_a_problem(
    template: dict[str, Any], field: str, value: Any
) -> None:
    line = {**template, field: value}
    try:
        record = decode_line(json.dumps(line))
    except InvalidRecord as exc:
        assert ":" in str(exc)
    else:
        assert field in {"type", *record.__struct_fields__}
