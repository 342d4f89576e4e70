"""CDISC conformance rules (issue 15): each rule passes on conformant data and finds its breach."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from ledger.exchange.conformance import EXPECTED, REQUIRED, RULES, check, conformance_report
from ledger.exchange.sdtmig import SPECS, Dataset

Datasets = dict[str, Dataset]


def dataset(name: str, *rows: dict[str, Any]) -> Dataset:
    """A dataset of ``rows``, every variable of its SDTMIG 3.4 metadata null unless given."""
    spec = SPECS[name]
    return Dataset(
        spec, [{**dict.fromkeys(spec.columns), "STUDYID": "S", "DOMAIN": name, **row} for row in rows]
    )


def conformant() -> Datasets:
    """One treated participant and one screen failure, with every rule satisfied."""
    treated = {"USUBJID": "S-1", "SUBJID": "1", "SITEID": "NFH", "SEX": "F", "COUNTRY": "CHN", "AGE": 40}
    return {
        "DM": dataset(
            "DM",
            {
                **treated,
                "RFSTDTC": "2015-03-10",
                "RFENDTC": "2016-03-09",
                "RFXSTDTC": "2015-03-10",
                "RFXENDTC": "2015-03-25",
                "RFPENDTC": "2016-03-09",
                "ARMCD": "MSC",
                "ARM": "MSC 1 x 10^6 cells/kg",
                "ACTARMCD": "MSC",
                "ACTARM": "MSC 1 x 10^6 cells/kg",
                "DMDTC": "2015-03-05",
                "DMDY": -5,
            },
            {
                **treated,
                "USUBJID": "S-2",
                "SUBJID": "2",
                "RFPENDTC": "2015-03-06",
                "ARMNRS": "SCREEN FAILURE",
                "DMDTC": "2015-03-06",
            },
        ),
        "EX": dataset(
            "EX",
            {
                "USUBJID": "S-1",
                "EXSEQ": 1,
                "EXTRT": "MSC",
                "EXSTDTC": "2015-03-10",
                "EXENDTC": "2015-03-10",
                "EXSTDY": 1,
                "EXENDY": 1,
            },
            {
                "USUBJID": "S-1",
                "EXSEQ": 2,
                "EXTRT": "MSC",
                "EXSTDTC": "2015-03-25",
                "EXENDTC": "2015-03-25",
                "EXSTDY": 16,
                "EXENDY": 16,
            },
        ),
        "LB": dataset(
            "LB",
            {
                "USUBJID": "S-1",
                "LBSEQ": 1,
                "LBTESTCD": "CMVDNA",
                "LBTEST": "Cytomegalovirus DNA",
                "LBDTC": "2015-03-09",
                "LBDY": -1,
            },
        ),
        "AE": dataset(
            "AE",
            {
                "USUBJID": "S-1",
                "AESEQ": 1,
                "AETERM": "Fever",
                "AEDECOD": "Pyrexia",
                "AESTDTC": "2015-03-12",
                "AEENDTC": "2015-03-20",
                "AESTDY": 3,
                "AEENDY": 11,
            },
        ),
        "DS": dataset(
            "DS",
            {
                "USUBJID": "S-1",
                "DSSEQ": 1,
                "DSTERM": "INFORMED CONSENT OBTAINED",
                "DSDECOD": "INFORMED CONSENT OBTAINED",
                "DSSTDTC": "2015-03-01",
                "DSSTDY": -9,
            },
        ),
    }


def setting(name: str, record: int, **values: Any) -> Callable[[Datasets], None]:
    def change(datasets: Datasets) -> None:
        datasets[name].rows[record - 1].update(values)

    return change


def without(name: str, variable: str) -> Callable[[Datasets], None]:
    def change(datasets: Datasets) -> None:
        old = datasets[name]
        variables = tuple(v for v in old.spec.variables if v.name != variable)
        rows = [{k: v for k, v in row.items() if k != variable} for row in old.rows]
        datasets[name] = Dataset(dataclasses.replace(old.spec, variables=variables), rows)

    return change


# rule, what breaks it, and exactly what the rule then finds: (dataset, variable, record).
BREACHES: list[tuple[str, Callable[[Datasets], None], list[tuple[str, str, int | None]]]] = [
    ("CG0014", setting("AE", 1, AEDECOD=None), [("AE", "AEDECOD", 1)]),
    ("CG0014", without("DM", "SUBJID"), [("DM", "SUBJID", None)]),
    ("SD0057", without("DM", "RFPENDTC"), [("DM", "RFPENDTC", None)]),
    ("SD0003", setting("AE", 1, AESTDTC="12/03/2015"), [("AE", "AESTDTC", 1)]),
    ("SD0003", setting("DS", 1, DSSTDTC="2015-02-30"), [("DS", "DSSTDTC", 1)]),
    ("CG0006", setting("LB", 1, LBDY=0), [("LB", "LBDY", 1)]),
    ("CG0220", setting("AE", 1, AESTDY=2), [("AE", "AESTDY", 1)]),
    ("CG0222", setting("AE", 1, AEENDY=10), [("AE", "AEENDY", 1)]),
    ("CG0028", setting("EX", 2, EXSEQ=1), [("EX", "EXSEQ", 2)]),
    ("SD1002", setting("DM", 1, RFENDTC="2015-03-01"), [("DM", "RFENDTC", 1)]),
    ("CG0141", setting("DM", 2, RFENDTC="2015-03-06"), [("DM", "RFENDTC", 2)]),
    (
        "CG0141",
        setting("DM", 2, ARMNRS=None, ACTARM="Not Treated", RFENDTC="2015-03-06"),
        [("DM", "RFENDTC", 2)],
    ),
    ("CG0145", setting("DM", 2, RFSTDTC="2015-03-06"), [("DM", "RFSTDTC", 2)]),
    ("CG0146", setting("DM", 1, RFSTDTC=None), [("DM", "RFSTDTC", 1)]),
    ("DM-ARMNRS", setting("DM", 2, ARMNRS=None), [("DM", "ARMNRS", 2)]),
    ("DM-ARMNRS", setting("DM", 1, ARMNRS="NOT ASSIGNED"), [("DM", "ARMNRS", 1)]),
    ("DM-ARMNRS", setting("DM", 2, ARMCD="SCRNFAIL", ARM="Screen Failure"), [("DM", "ARMCD", 2)]),
    ("DM-ARMNRS", setting("DM", 1, ACTARM=None), [("DM", "ACTARM", 1)]),
    ("CG0148", setting("DM", 1, RFXSTDTC="2015-03-11"), [("DM", "RFXSTDTC", 1)]),
    ("CG0147", setting("DM", 1, RFXENDTC="2015-03-24"), [("DM", "RFXENDTC", 1)]),
    ("TCG", setting("AE", 1, AETERM="Fièvre"), [("AE", "AETERM", 1)]),
    ("TCG", setting("DS", 1, DSTERM="x" * 201), [("DS", "DSTERM", 1)]),
]


def test_conformant_datasets_have_no_finding() -> None:
    """The passing case of every rule: nothing found, every rule reported with 0."""
    findings = check(conformant())
    assert findings == []
    report = conformance_report(findings)
    assert [r["id"] for r in report["rules"]] == [r.id for r in RULES]
    assert all(r["findings"] == 0 for r in report["rules"]) and report["errors"] == 0


@pytest.mark.parametrize(
    ("rule", "breach", "found"), BREACHES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BREACHES)]
)
def test_each_rule_finds_its_breach(
    rule: str, breach: Callable[[Datasets], None], found: list[tuple[str, str, int | None]]
) -> None:
    datasets = conformant()
    breach(datasets)
    findings = [f for f in check(datasets) if f.rule == rule]
    assert [(f.dataset, f.variable, f.record) for f in findings] == found
    assert all(
        f.usubjid == (None if f.record is None else datasets[f.dataset].rows[f.record - 1]["USUBJID"])
        for f in findings
    )


def test_every_rule_has_a_failing_case() -> None:
    assert {rule for rule, _, _ in BREACHES} == {r.id for r in RULES}


def test_findings_are_counted_per_rule_and_errors_add_up() -> None:
    datasets = conformant()
    setting("AE", 1, AEDECOD=None)(datasets)
    without("DM", "RFPENDTC")(datasets)
    report = conformance_report(check(datasets))
    counts = {r["id"]: r["findings"] for r in report["rules"]}
    assert (counts["CG0014"], counts["SD0057"], report["errors"]) == (1, 1, 1)  # SD0057 is a warning
    assert report["findings"][0] == {
        "rule": "CG0014",
        "dataset": "AE",
        "variable": "AEDECOD",
        "usubjid": "S-1",
        "record": 1,
        "message": "Required variable AEDECOD is null",
    }


def test_the_export_metadata_declares_the_sdtmig_core_designations() -> None:
    """The export's own metadata agrees with the checker's independent SDTMIG 3.4 tables."""
    for name, required in REQUIRED.items():
        spec = SPECS[name]
        assert {v.name for v in spec.variables if v.core == "Req"} == set(required), name
        assert {v.name for v in spec.variables if v.core == "Exp"} == set(EXPECTED[name]), name
