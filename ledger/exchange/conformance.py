"""CDISC conformance of SDTM datasets: the rules checked and what they find (issue 15).

:func:`check` is a pure function over the datasets (as :mod:`ledger.exchange.sdtm`
builds them, or as anyone hands them over) returning :class:`Finding` rows.
It does not trust the export's own metadata: the Required and Expected
variables of each domain are SDTMIG 3.4's, listed here again, so a variable
the export forgets is found missing.  Rule ids are those of the CDISC SDTM
conformance rules (``CG....``) or, where the FDA's validator rules state the
check, the FDA's (``SD....``).

A finding does not stop the export: the report lists the rules checked and
what each found, so a data manager sees both what holds and what does not.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.exchange.sdtmig import NOT_ASSIGNED, NOT_TREATED, SCREEN_FAILURE, Dataset
from ledger.exchange.xport import MAX_LABEL, MAX_NAME, MAX_TEXT

_IDS = ("STUDYID", "DOMAIN", "USUBJID")
_SUPP_REQUIRED = ("STUDYID", "RDOMAIN", "USUBJID", "QNAM", "QLABEL", "QVAL", "QORIG")
# SDTMIG 3.4 core designations: Required (present, never null) and Expected (present).
REQUIRED: dict[str, tuple[str, ...]] = {
    "DM": (*_IDS, "SUBJID", "SITEID", "SEX", "COUNTRY"),
    "EX": (*_IDS, "EXSEQ", "EXTRT"),
    "LB": (*_IDS, "LBSEQ", "LBTESTCD", "LBTEST"),
    "AE": (*_IDS, "AESEQ", "AETERM", "AEDECOD"),
    "DS": (*_IDS, "DSSEQ", "DSTERM", "DSDECOD"),
}
EXPECTED: dict[str, tuple[str, ...]] = {
    "DM": (
        "RFSTDTC",
        "RFENDTC",
        "RFXSTDTC",
        "RFXENDTC",
        "RFICDTC",
        "RFPENDTC",
        "DTHDTC",
        "DTHFL",
        "AGE",
        "AGEU",
        "RACE",
        "ARMCD",
        "ARM",
        "ACTARMCD",
        "ACTARM",
        "ARMNRS",
        "ACTARMUD",
    ),
    "EX": ("EXDOSE", "EXDOSU", "EXDOSFRM", "EXSTDTC", "EXENDTC"),
    "LB": (
        "LBCAT",
        "LBORRES",
        "LBORRESU",
        "LBORNRLO",
        "LBORNRHI",
        "LBSTRESC",
        "LBSTRESN",
        "LBSTRESU",
        "LBSTNRLO",
        "LBSTNRHI",
        "LBNRIND",
        "LBLOBXFL",
        "VISITNUM",
        "LBDTC",
    ),
    "AE": (
        "AELLT",
        "AELLTCD",
        "AEPTCD",
        "AEHLT",
        "AEHLTCD",
        "AEHLGT",
        "AEHLGTCD",
        "AEBODSYS",
        "AEBDSYCD",
        "AESOC",
        "AESOCCD",
        "AESER",
        "AEACN",
        "AEREL",
        "AESTDTC",
        "AEENDTC",
    ),
    "DS": ("DSCAT", "DSSTDTC"),
}
_SUPP_EXPECTED = ("IDVAR", "IDVARVAL", "QEVAL")
# ACTARM of a participant never treated: SDTMIG 3.2's descriptions, for data made before 3.3.
_LEGACY_UNTREATED = ("Screen Failure", "Not Assigned", "Not Treated")
_LEGACY_CODES = ("SCRNFAIL", "NOTASSGN", "NOTTRT")
_ISO8601 = re.compile(
    r"(?P<date>\d{4}(-\d{2}(-\d{2})?)?)"
    r"(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?"
)
_STUDY_DAY = re.compile(r"[A-Z]{2}(ST|EN)?DY")


@dataclass(frozen=True)
class Finding:
    """What one rule found in one record (``record`` is 1-based; ``None`` for the dataset)."""

    rule: str
    dataset: str
    variable: str
    usubjid: str | None
    record: int | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "dataset": self.dataset,
            "variable": self.variable,
            "usubjid": self.usubjid,
            "record": self.record,
            "message": self.message,
        }


Datasets = Mapping[str, Dataset]


@dataclass(frozen=True)
class Rule:
    """A conformance rule: id, what it requires, severity, and the check that finds breaches."""

    id: str
    description: str
    severity: str  # "error" or "warning"
    find: Callable[[Datasets], Iterator[Finding]]


def _required(dataset: Dataset) -> tuple[str, ...]:
    return _SUPP_REQUIRED if dataset.name.startswith("SUPP") else REQUIRED.get(dataset.name, ())


def _expected(dataset: Dataset) -> tuple[str, ...]:
    return _SUPP_EXPECTED if dataset.name.startswith("SUPP") else EXPECTED.get(dataset.name, ())


def _records(dataset: Dataset) -> Iterator[tuple[int, dict[str, Any]]]:
    return enumerate(dataset.rows, start=1)


def _finding(rule: str, dataset: Dataset, variable: str, number: int | None, message: str) -> Finding:
    usubjid = dataset.rows[number - 1].get("USUBJID") if number else None
    return Finding(rule, dataset.name, variable, usubjid, number, message)


def _null(value: Any) -> bool:
    return value is None or value == ""


def required_never_null(datasets: Datasets) -> Iterator[Finding]:
    """CG0014: a Required variable is in the dataset and never null."""
    for dataset in datasets.values():
        for name in _required(dataset):
            if name not in dataset.spec.columns:
                yield _finding("CG0014", dataset, name, None, f"Required variable {name} is missing")
                continue
            for number, row in _records(dataset):
                if _null(row.get(name)):
                    yield _finding("CG0014", dataset, name, number, f"Required variable {name} is null")


def expected_present(datasets: Datasets) -> Iterator[Finding]:
    """SD0057: an Expected variable is in the dataset (it may be null)."""
    for dataset in datasets.values():
        for name in _expected(dataset):
            if name not in dataset.spec.columns:
                yield _finding("SD0057", dataset, name, None, f"Expected variable {name} is missing")


def iso8601_dates(datasets: Datasets) -> Iterator[Finding]:
    """SD0003: every --DTC value is ISO 8601 (a date or date-time, complete or partial, real)."""
    for dataset in datasets.values():
        for name in (c for c in dataset.spec.columns if c.endswith("DTC")):
            for number, row in _records(dataset):
                value = row.get(name)
                if not _null(value) and not _is_iso8601(str(value)):
                    yield _finding("SD0003", dataset, name, number, f"{name} '{value}' is not ISO 8601")


def _is_iso8601(value: str) -> bool:
    """An ISO 8601 date or date-time, complete or partial (``2015``, ``2015-03``), of a real date."""
    match = _ISO8601.fullmatch(value)
    if match is None:
        return False
    date = match.group("date")
    try:
        dt.date.fromisoformat(date + {4: "-01-01", 7: "-01"}.get(len(date), ""))
    except ValueError:
        return False
    return True


def study_day_not_zero(datasets: Datasets) -> Iterator[Finding]:
    """CG0006: a study day (--DY, --STDY, --ENDY) is a non-zero integer."""
    for dataset in datasets.values():
        for name in (c for c in dataset.spec.columns if _STUDY_DAY.fullmatch(c)):
            for number, row in _records(dataset):
                value = row.get(name)
                if not _null(value) and (float(value) == 0 or float(value) != int(float(value))):
                    yield _finding(
                        "CG0006", dataset, name, number, f"{name} is {value}: no day 0, whole days"
                    )


def _reference_starts(datasets: Datasets) -> dict[str, dt.date]:
    dm = datasets.get("DM")
    starts = {}
    for row in dm.rows if dm else ():
        value = row.get("RFSTDTC")
        if not _null(value) and len(str(value)) >= 10:
            starts[row["USUBJID"]] = dt.date.fromisoformat(str(value)[:10])
    return starts


def _day_rule(rule: str, day_suffix: tuple[str, ...]) -> Callable[[Datasets], Iterator[Finding]]:
    def find(datasets: Datasets) -> Iterator[Finding]:
        starts = _reference_starts(datasets)
        for dataset in datasets.values():
            domain = dataset.name
            for suffix in day_suffix:
                day, date = f"{domain}{suffix}DY", f"{domain}{suffix}DTC"
                if day not in dataset.spec.columns or date not in dataset.spec.columns:
                    continue
                for number, row in _records(dataset):
                    start, value = starts.get(row.get("USUBJID", "")), row.get(date)
                    if start is None or _null(value) or len(str(value)) < 10 or not _is_iso8601(str(value)):
                        continue
                    days = (dt.date.fromisoformat(str(value)[:10]) - start).days
                    want = days + 1 if days >= 0 else days
                    if _null(row.get(day)) or float(row[day]) != want:
                        yield _finding(
                            rule, dataset, day, number, f"{day} is {row.get(day)}, {date} gives {want}"
                        )

    return find


def sequence_unique(datasets: Datasets) -> Iterator[Finding]:
    """CG0028: --SEQ is unique for each record of a subject within a domain."""
    for dataset in datasets.values():
        name = f"{dataset.name}SEQ"
        if name not in dataset.spec.columns:
            continue
        seen: Counter[tuple[Any, Any]] = Counter()
        for number, row in _records(dataset):
            key = (row.get("USUBJID"), row.get(name))
            seen[key] += 1
            if seen[key] == 2:
                yield _finding("CG0028", dataset, name, number, f"{name} {key[1]} repeats for {key[0]}")


def _dm_rows(datasets: Datasets) -> Iterator[tuple[Dataset, int, dict[str, Any]]]:
    dm = datasets.get("DM")
    for number, row in _records(dm) if dm else ():
        yield dm, number, row  # type: ignore[misc]


def _never_treated(row: dict[str, Any]) -> bool:
    """SDTMIG 3.3+: null ACTARMCD with ARMNRS; before 3.3, the ACTARM descriptions."""
    if row.get("ACTARM") in _LEGACY_UNTREATED:
        return True
    return _null(row.get("ACTARMCD")) and not _null(row.get("ARMNRS"))


def reference_start_before_end(datasets: Datasets) -> Iterator[Finding]:
    """SD1002: RFSTDTC is on or before RFENDTC."""
    for dm, number, row in _dm_rows(datasets):
        start, end = row.get("RFSTDTC"), row.get("RFENDTC")
        if not _null(start) and not _null(end) and str(start)[:10] > str(end)[:10]:
            yield _finding("SD1002", dm, "RFENDTC", number, f"RFSTDTC {start} is after RFENDTC {end}")


def untreated_end_null(datasets: Datasets) -> Iterator[Finding]:
    """CG0141: RFENDTC is null for a participant never treated (screen failure, not assigned, not treated)."""
    for dm, number, row in _dm_rows(datasets):
        if _never_treated(row) and not _null(row.get("RFENDTC")):
            yield _finding(
                "CG0141", dm, "RFENDTC", number, f"RFENDTC {row['RFENDTC']} for a participant never treated"
            )


def untreated_start_null(datasets: Datasets) -> Iterator[Finding]:
    """CG0145: RFSTDTC (start of treatment) is null for a participant never treated."""
    for dm, number, row in _dm_rows(datasets):
        if _never_treated(row) and not _null(row.get("RFSTDTC")):
            yield _finding(
                "CG0145", dm, "RFSTDTC", number, f"RFSTDTC {row['RFSTDTC']} for a participant never treated"
            )


def treated_start_given(datasets: Datasets) -> Iterator[Finding]:
    """CG0146: RFSTDTC (start of treatment) is given for a treated participant."""
    for dm, number, row in _dm_rows(datasets):
        if not _never_treated(row) and not _null(row.get("ACTARMCD")) and _null(row.get("RFSTDTC")):
            yield _finding("CG0146", dm, "RFSTDTC", number, "RFSTDTC is null for a treated participant")


def null_arm_reason(datasets: Datasets) -> Iterator[Finding]:
    """SDTMIG 3.3+ DM: ARMNRS is given exactly when ARMCD or ACTARMCD is null, with ARM/ACTARM null too.

    A code carries its description (ARMCD with ARM, ACTARMCD with ACTARM), and
    SDTMIG 3.2's pseudo-arms (SCRNFAIL, NOTASSGN, NOTTRT) are no arm codes.
    """
    for dm, number, row in _dm_rows(datasets):
        null_arm = _null(row.get("ARMCD")) or _null(row.get("ACTARMCD"))
        if null_arm == _null(row.get("ARMNRS")):
            given = "null" if _null(row.get("ARMNRS")) else f"'{row['ARMNRS']}'"
            yield _finding(
                "DM-ARMNRS",
                dm,
                "ARMNRS",
                number,
                f"ARMNRS is {given} with ARMCD {row.get('ARMCD')}, ACTARMCD {row.get('ACTARMCD')}",
            )
        for code, description in (("ARMCD", "ARM"), ("ACTARMCD", "ACTARM")):
            if _null(row.get(code)) != _null(row.get(description)):
                yield _finding(
                    "DM-ARMNRS", dm, description, number, f"{code} and {description} are not null together"
                )
            if row.get(code) in _LEGACY_CODES:
                yield _finding(
                    "DM-ARMNRS", dm, code, number, f"{code} {row[code]} is an SDTMIG 3.2 pseudo-arm"
                )


def _exposure(datasets: Datasets, column: str, pick: Callable[[list[str]], str]) -> dict[str, str]:
    ex = datasets.get("EX")
    dates: dict[str, list[str]] = {}
    for row in ex.rows if ex else ():
        if not _null(row.get(column)):
            dates.setdefault(row["USUBJID"], []).append(str(row[column]))
    return {usubjid: pick(values) for usubjid, values in dates.items()}


def first_treatment(datasets: Datasets) -> Iterator[Finding]:
    """CG0148: RFXSTDTC is the subject's earliest EXSTDTC."""
    return _treatment_bound(datasets, "CG0148", "RFXSTDTC", "EXSTDTC", min, "earliest")


def last_treatment(datasets: Datasets) -> Iterator[Finding]:
    """CG0147: RFXENDTC is the subject's latest EXENDTC."""
    return _treatment_bound(datasets, "CG0147", "RFXENDTC", "EXENDTC", max, "latest")


def _treatment_bound(
    datasets: Datasets,
    rule: str,
    reference: str,
    exposure: str,
    pick: Callable[[list[str]], str],
    which: str,
) -> Iterator[Finding]:
    """DM's ``reference`` date is the ``which`` (``pick``) of the subject's EX ``exposure`` dates."""
    bounds = _exposure(datasets, exposure, pick)
    for dm, number, row in _dm_rows(datasets):
        want = bounds.get(row["USUBJID"])
        if want is not None and row.get(reference) != want:
            yield _finding(
                rule, dm, reference, number, f"{reference} {row.get(reference)}, {which} {exposure} {want}"
            )


def transport_limits(datasets: Datasets) -> Iterator[Finding]:
    """FDA Technical Conformance Guide: names of 8, labels of 40, text of 200 bytes, ASCII only."""
    for dataset in datasets.values():
        if len(dataset.name) > MAX_NAME or len(dataset.spec.label) > MAX_LABEL:
            yield _finding("TCG", dataset, "", None, "dataset name over 8 or label over 40 characters")
        for variable in dataset.spec.variables:
            if len(variable.name) > MAX_NAME or len(variable.label) > MAX_LABEL:
                yield _finding("TCG", dataset, variable.name, None, "name over 8 or label over 40 characters")
        for number, row in _records(dataset):
            for name, value in row.items():
                if isinstance(value, str) and (not value.isascii() or len(value.encode()) > MAX_TEXT):
                    yield _finding("TCG", dataset, name, number, f"{name} is not ASCII of at most 200 bytes")


RULES: tuple[Rule, ...] = (
    Rule("CG0014", "Required variables are present and never null", "error", required_never_null),
    Rule("SD0057", "Expected variables are present", "warning", expected_present),
    Rule("SD0003", "--DTC values are ISO 8601", "error", iso8601_dates),
    Rule("CG0006", "Study days are non-zero integers (no day 0)", "error", study_day_not_zero),
    Rule(
        "CG0220",
        "--DY and --STDY follow the study day algorithm from RFSTDTC",
        "error",
        _day_rule("CG0220", ("", "ST")),
    ),
    Rule(
        "CG0222", "--ENDY follows the study day algorithm from RFSTDTC", "error", _day_rule("CG0222", ("EN",))
    ),
    Rule("CG0028", "--SEQ is unique per subject within a domain", "error", sequence_unique),
    Rule("SD1002", "RFSTDTC is on or before RFENDTC", "error", reference_start_before_end),
    Rule(
        "CG0141",
        f"RFENDTC is null when never treated ({SCREEN_FAILURE}, {NOT_ASSIGNED}, {NOT_TREATED})",
        "error",
        untreated_end_null,
    ),
    Rule("CG0145", "RFSTDTC is null when never treated", "error", untreated_start_null),
    Rule("CG0146", "RFSTDTC is given when treated", "error", treated_start_given),
    Rule(
        "DM-ARMNRS", "ARMNRS exactly when ARMCD or ACTARMCD is null (SDTMIG 3.3+)", "error", null_arm_reason
    ),
    Rule("CG0148", "RFXSTDTC is the earliest EXSTDTC", "error", first_treatment),
    Rule("CG0147", "RFXENDTC is the latest EXENDTC", "error", last_treatment),
    Rule("TCG", "Names of 8, labels of 40, ASCII text of 200 bytes (FDA TCG)", "error", transport_limits),
)


def check(datasets: Datasets) -> list[Finding]:
    """Every finding of every rule of :data:`RULES` over ``datasets``, rule by rule."""
    return [finding for rule in RULES for finding in rule.find(datasets)]


def conformance_report(findings: list[Finding]) -> dict[str, Any]:
    """The rules checked, each with its count of findings, and the findings: the ``--json`` form."""
    counts = Counter(f.rule for f in findings)
    return {
        "rules": [
            {"id": r.id, "description": r.description, "severity": r.severity, "findings": counts[r.id]}
            for r in RULES
        ],
        "errors": sum(counts[r.id] for r in RULES if r.severity == "error"),
        "findings": [f.to_json() for f in findings],
    }
