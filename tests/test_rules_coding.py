"""Adverse-event coding on the coding rules themselves, no store (issue 15; issue 16).

What a coding may code, when a recoding changes something (each field on its own),
and which coding counts after a correction of the term.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ledger.domain.errors import InvalidInput
from ledger.domain.events import CODING_FIELDS, AdverseEventCoded, AdverseEventReported
from ledger.domain.rules.coding import check_coding, coded_report, current_codings, needs_coding
from ledger.domain.rules.corrections import fold
from tests.builders import Ledger, day

TERMS = {
    "dictionary": "Invented 1.0",
    **{
        f"{level}_code": f"{10000000 + number}"
        for number, level in enumerate(("llt", "pt", "hlt", "hlgt", "soc"))
    },
    **{level: f"Invented {level}" for level in ("llt", "pt", "hlt", "hlgt", "soc")},
}


def coding(ae_id: str = "AE1", verbatim: str = "pneumonia", **fields: Any) -> AdverseEventCoded:
    return AdverseEventCoded(participant="NFH-001", ae_id=ae_id, verbatim=verbatim, **{**TERMS, **fields})


def _code(
    ledger: Ledger, ae_id: str = "AE1", verbatim: str = "pneumonia", **fields: Any
) -> AdverseEventCoded:
    return ledger.add(
        AdverseEventCoded, "NFH-001", ae_id=ae_id, verbatim=verbatim, **{**TERMS, **fields}
    ).record  # type: ignore[return-value]


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.treated()
    return ledger


def test_a_coding_codes_a_reported_ae() -> None:
    ledger = _ledger()
    first = ledger.ae(on=day(2), ae_id="AE1").record
    second = ledger.ae(on=day(3), ae_id="AE2").record
    reports: list[AdverseEventReported] = [first, second]  # type: ignore[list-item]
    assert coded_report("NFH-001", reports, "AE2") is second
    with pytest.raises(InvalidInput) as refused:
        coded_report("NFH-001", reports, "AE3")
    assert str(refused.value) == (
        "NFH-001: ae_id: no adverse event AE3 is reported (and not voided) (rule coding_of_a_reported_ae)"
    )


def test_a_first_coding_and_a_recoding_that_changes_a_field_are_accepted() -> None:
    check_coding("NFH-001", None, coding())
    for name in ("verbatim", *CODING_FIELDS):
        check_coding("NFH-001", coding(), msgspec.structs.replace(coding(), **{name: "other"}))


def test_a_recoding_equal_to_the_latest_coding_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_coding("NFH-001", coding(), coding())
    assert str(refused.value) == (
        "NFH-001: ae_id: AE1 is already coded with these terms and codes (rule recoding_changes_something)"
    )


def test_the_latest_coding_counts_while_the_term_reads_as_coded() -> None:
    ledger = _ledger()
    report = ledger.ae(on=day(2), ae_id="AE1")
    ledger.ae(on=day(3), ae_id="AE2", term="rash")
    ledger.ae(on=day(4), ae_id="AE3", term="fever")
    _code(ledger, pt="first")
    latest = _code(ledger, pt="second")
    rash = _code(ledger, "AE2", "rash")
    history = fold(ledger.entries)["NFH-001"]
    assert current_codings(history) == {"AE1": latest, "AE2": rash}
    assert [(ae.ae_id, why) for ae, why in needs_coding(history)] == [("AE3", "not coded")]
    ledger.correct(report, term="pneumonitis")
    history = fold(ledger.entries)["NFH-001"]
    assert current_codings(history) == {"AE2": rash}
    assert [(ae.ae_id, why) for ae, why in needs_coding(history)] == [
        ("AE1", "term corrected since coding"),
        ("AE3", "not coded"),
    ]
