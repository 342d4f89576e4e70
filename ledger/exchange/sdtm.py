"""SDTM datasets of the ledger as CSV, with a define-style variables list (issue #6; SPEC sections 2-4).

``export sdtm DIR`` writes ``dm.csv``, ``ex.csv``, ``lb.csv`` (CMV DNA),
``ae.csv`` and ``ds.csv`` in SDTM naming, ``define.csv`` (every variable of
every dataset: label, type, origin, derivation) and ``export.json`` (what was
exported, as of which dates, and whether the data were locked then).

Values are those of ``--as-of`` (only events effective on or before it count;
adverse events with their updates effective by then) as known at
``--known-at`` (corrections recorded by then applied, voided events left out):
the read models of :mod:`projections`.  ``RFSTDTC`` is day 1, the first
infusion; study days (``--DY``) count from it with no day 0, as SDTM does: the
day before day 1 is day -1.  ``--SPID`` is the ledger event id, so every row
traces back to the audit trail.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

from ledger.application.access import lock_state
from ledger.domain.entry import Entry
from ledger.domain.events import (
    CMVLoadMeasured,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    ParticipantWithdrew,
    utc_text,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.corrections import ParticipantHistory, fold
from ledger.domain.rules.safety import adverse_events
from ledger.domain.rules.status import ParticipantStatus, summarise
from ledger.domain.rules.treatment import day_date
from ledger.domain.text import printable

TREATMENT = "MESENCHYMAL STEM CELLS"
SEVERITY = {1: "MILD", 2: "MODERATE"}  # CTCAE grade 3 and above: SEVERE
OUTCOMES = {
    "recovered": "RECOVERED/RESOLVED",
    "recovering": "RECOVERING/RESOLVING",
    "not_recovered": "NOT RECOVERED/NOT RESOLVED",
    "recovered_with_sequelae": "RECOVERED/RESOLVED WITH SEQUELAE",
    "fatal": "FATAL",
}
CRITERIA = {
    "AESDTH": "death",
    "AESLIFE": "life_threatening",
    "AESHOSP": "hospitalisation",
    "AESDISAB": "disability",
    "AESCONG": "congenital_anomaly",
    "AESMIE": "important_medical_event",
}


@dataclass(frozen=True)
class Variable:
    """One column of a dataset as ``define.csv`` describes it."""

    name: str
    label: str
    type: str = "Char"  # or "Num"
    origin: str = "CRF"  # CRF (entered at the site), Derived, Assigned
    comment: str = ""


def _v(name: str, label: str, type: str = "Char", origin: str = "CRF", comment: str = "") -> Variable:
    return Variable(name, label, type, origin, comment)


def _identifiers(domain: str) -> list[Variable]:
    return [
        _v("STUDYID", "Study Identifier", origin="Assigned", comment="protocol study code"),
        _v("DOMAIN", "Domain Abbreviation", origin="Assigned", comment=domain),
        _v("USUBJID", "Unique Subject Identifier", origin="Derived", comment="STUDYID-participant code"),
    ]


def _seq(domain: str) -> list[Variable]:
    return [
        _v(f"{domain}SEQ", "Sequence Number", "Num", "Derived", "order by date within subject"),
        _v(f"{domain}SPID", "Sponsor-Defined Identifier", origin="Assigned", comment="ledger event id"),
    ]


def _day(domain: str, which: str, label: str) -> Variable:
    comment = "date minus RFSTDTC, plus 1 on or after day 1 (no day 0)"
    return _v(f"{domain}{which}DY", label, "Num", "Derived", comment)


DATASETS: dict[str, list[Variable]] = {
    "DM": [
        *_identifiers("DM"),
        _v("SUBJID", "Subject Identifier for the Study", comment="participant code <SITE>-<NNN>"),
        _v(
            "RFSTDTC", "Subject Reference Start Date/Time", origin="Derived", comment="first infusion (day 1)"
        ),
        _v(
            "RFENDTC",
            "Subject Reference End Date/Time",
            origin="Derived",
            comment="death, withdrawal or end of follow-up",
        ),
        _v("RFXSTDTC", "Date/Time of First Study Treatment", origin="Derived", comment="first infusion"),
        _v("RFXENDTC", "Date/Time of Last Study Treatment", origin="Derived", comment="last infusion"),
        _v("RFICDTC", "Date/Time of Informed Consent", comment="consent_date"),
        _v("DTHDTC", "Date/Time of Death", comment="ParticipantDied effective date"),
        _v("DTHFL", "Subject Death Flag", origin="Derived"),
        _v("SITEID", "Study Site Identifier"),
        _v("AGE", "Age", "Num", comment="age_years at screening, standing for the consent date"),
        _v("AGEU", "Age Units", origin="Assigned"),
        _v("SEX", "Sex"),
        _v(
            "ARMCD",
            "Planned Arm Code",
            origin="Derived",
            comment="MSC when enrolled, SCRNFAIL, else NOTASSGN",
        ),
        _v("ARM", "Description of Planned Arm", origin="Derived"),
        _v(
            "ACTARMCD",
            "Actual Arm Code",
            origin="Derived",
            comment="MSC when infused, NOTTRT when enrolled only",
        ),
        _v("ACTARM", "Description of Actual Arm", origin="Derived"),
        _v("COUNTRY", "Country", origin="Assigned", comment="the protocol's country of every site"),
        _v("DMDTC", "Date/Time of Collection", comment="screening date"),
        _day("DM", "", "Study Day of Collection"),
    ],
    "EX": [
        *_identifiers("EX"),
        *_seq("EX"),
        _v("EXTRT", "Name of Treatment", origin="Assigned"),
        _v("EXDOSE", "Dose", "Num", comment="cells_per_kg"),
        _v("EXDOSU", "Dose Units", origin="Assigned"),
        _v("EXDOSFRM", "Dose Form", origin="Assigned"),
        _v("EXROUTE", "Route of Administration", origin="Assigned"),
        _v("EXLOT", "Lot Number", comment="lot"),
        _v("VISITNUM", "Visit Number", "Num", comment="course"),
        _v("VISIT", "Visit Name", origin="Derived"),
        _v("EXSTDTC", "Start Date/Time of Treatment", comment="infusion date"),
        _v("EXENDTC", "End Date/Time of Treatment", comment="infusion date (one infusion a course)"),
        _day("EX", "ST", "Study Day of Start of Treatment"),
        _day("EX", "EN", "Study Day of End of Treatment"),
    ],
    "LB": [
        *_identifiers("LB"),
        *_seq("LB"),
        _v("LBTESTCD", "Lab Test or Examination Short Name", origin="Assigned"),
        _v("LBTEST", "Lab Test or Examination Name", origin="Assigned"),
        _v("LBCAT", "Category for Lab Test", origin="Assigned"),
        _v(
            "LBORRES",
            "Result or Finding in Original Units",
            origin="Derived",
            comment="value_iu_ml, NOT DETECTED, <LLOQ or >ULOQ from result",
        ),
        _v("LBORRESU", "Original Units", origin="Assigned"),
        _v("LBSTRESC", "Character Result/Finding in Std Format", origin="Derived"),
        _v(
            "LBSTRESN",
            "Numeric Result/Finding in Standard Units",
            "Num",
            "Derived",
            "quantified results only",
        ),
        _v("LBSTRESU", "Standard Units", origin="Assigned"),
        _v("LBSPEC", "Specimen Type", comment="specimen"),
        _v("LBMETHOD", "Method of Test or Examination", comment="assay"),
        _v("LBLLOQ", "Lower Limit of Quantitation", "Num", comment="lloq_iu_ml"),
        _v("LBDTC", "Date/Time of Specimen Collection", comment="sample date (effective)"),
        _day("LB", "", "Study Day of Specimen Collection"),
    ],
    "AE": [
        *_identifiers("AE"),
        _v("AESEQ", "Sequence Number", "Num", "Derived", "order by onset within subject"),
        _v("AESPID", "Sponsor-Defined Identifier", comment="ae_id, the site's AE number"),
        _v("AEREFID", "Reference ID", origin="Assigned", comment="ledger event id of the report"),
        _v("AETERM", "Reported Term for the Adverse Event", comment="term"),
        _v(
            "AEDECOD",
            "Dictionary-Derived Term",
            origin="Derived",
            comment="not coded: no MedDRA in the ledger",
        ),
        _v("AECAT", "Category for Adverse Event", comment="category"),
        _v("AESER", "Serious Event", comment="serious, after updates effective by the as-of date"),
        _v(
            "AESEV",
            "Severity/Intensity",
            origin="Derived",
            comment="CTCAE grade 1 MILD, 2 MODERATE, 3-5 SEVERE",
        ),
        _v("AETOXGR", "Standard Toxicity Grade", comment="CTCAE grade after updates"),
        _v("AEREL", "Causality", comment="WHO-UMC causality to MSC"),
        _v("AEOUT", "Outcome of Adverse Event", comment="outcome of the latest update"),
        *[
            _v(name, f"{criterion.replace('_', ' ').title()} (seriousness)", comment="criteria")
            for name, criterion in CRITERIA.items()
        ],
        _v("AESTDTC", "Start Date/Time of Adverse Event", comment="onset (effective)"),
        _v("AEENDTC", "End Date/Time of Adverse Event", comment="resolved_date"),
        _day("AE", "ST", "Study Day of Start of Adverse Event"),
        _day("AE", "EN", "Study Day of End of Adverse Event"),
    ],
    "DS": [
        *_identifiers("DS"),
        *_seq("DS"),
        _v("DSTERM", "Reported Term for the Disposition Event"),
        _v("DSDECOD", "Standardized Disposition Term", origin="Derived"),
        _v("DSCAT", "Category for Disposition Event", origin="Derived"),
        _v("DSSTDTC", "Start Date/Time of Disposition Event"),
        _day("DS", "ST", "Study Day of Start of Disposition Event"),
    ],
}


def sdtm_day(day1: dt.date | None, date: dt.date | None) -> int | None:
    """The SDTM study day of ``date``: day 1 is ``day1``, the day before it is day -1."""
    if day1 is None or date is None:
        return None
    days = (date - day1).days
    return days + 1 if days >= 0 else days


@dataclass(frozen=True)
class Subject:
    """One participant on the as-of date: the folded history and the status projection."""

    history: ParticipantHistory
    status: ParticipantStatus
    usubjid: str
    screening: ParticipantScreened

    @property
    def day1(self) -> dt.date | None:
        return self.status.first_infusion


def export_sdtm(
    entries: Iterable[Entry],
    protocol: Protocol,
    directory: str | Path,
    *,
    as_of: dt.date,
    known_at: dt.datetime | None,
    created: dt.datetime,
    shown_as: str | Path | None = None,
) -> dict[str, Any]:
    """Write the datasets, ``define.csv`` and ``export.json`` into ``directory``; the summary.

    ``shown_as`` is the folder the summary names, when ``directory`` is a
    temporary folder whose files are moved there afterwards (issue 11).
    """
    chosen = list(entries)
    subjects = _subjects(chosen, protocol, as_of)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for domain, build in BUILDERS.items():
        records = []
        for subject in subjects:
            made = list(build(subject, protocol, as_of))
            if domain in DATE_COLUMNS:
                made.sort(key=itemgetter(DATE_COLUMNS[domain]))
                for number, row in enumerate(made, start=1):
                    row[f"{domain}SEQ"] = number
            records.extend(
                {"STUDYID": protocol.study, "DOMAIN": domain, "USUBJID": subject.usubjid, **row}
                for row in made
            )
        _write_csv(out / f"{domain.lower()}.csv", [v.name for v in DATASETS[domain]], records)
        counts[domain] = len(records)
    define = [
        {
            "DATASET": domain,
            "VARIABLE": v.name,
            "LABEL": v.label,
            "TYPE": v.type,
            "ORIGIN": v.origin,
            "COMMENT": v.comment,
        }
        for domain, variables in DATASETS.items()
        for v in variables
    ]
    _write_csv(out / "define.csv", ["DATASET", "VARIABLE", "LABEL", "TYPE", "ORIGIN", "COMMENT"], define)
    summary = {
        "dir": str(shown_as or out),
        "study": protocol.study,
        "as_of": as_of.isoformat(),
        "known_at": utc_text(known_at or created),
        "created": utc_text(created),
        "events": len(chosen),
        "datasets": counts,
        "lock": lock_state(chosen).to_json(),
    }
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _subjects(entries: list[Entry], protocol: Protocol, as_of: dt.date) -> list[Subject]:
    """Every participant screened on or before ``as_of``, by site and number."""
    subjects = []
    for history in fold(entries).values():
        status = summarise(history, as_of, protocol)
        if status is None:
            continue
        screening = history.as_of(ParticipantScreened, as_of)[-1].record
        assert isinstance(screening, ParticipantScreened)
        subjects.append(Subject(history, status, f"{protocol.study}-{status.participant}", screening))
    return sorted(subjects, key=lambda s: (s.status.site, s.status.participant))


def _dm(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    status = s.status
    courses = status.course_dates
    if status.enrolled is not None:
        arm = ("MSC", _arm(protocol))
        actual = arm if courses else ("NOTTRT", "Not Treated")
    else:
        arm = (
            ("SCRNFAIL", "Screen Failure")
            if status.status == "screen_failed"
            else ("NOTASSGN", "Not Assigned")
        )
        actual = arm
    yield {
        "SUBJID": status.participant,
        "RFSTDTC": _iso(s.day1),
        "RFENDTC": _iso(_end_of_participation(s, protocol)),
        "RFXSTDTC": _iso(courses[0] if courses else None),
        "RFXENDTC": _iso(courses[-1] if courses else None),
        "RFICDTC": _iso(s.screening.consent_date if s.screening.consent_date <= as_of else None),
        "DTHDTC": _iso(status.died),
        "DTHFL": "Y" if status.died else "",
        "SITEID": status.site,
        "AGE": s.screening.age_years,
        "AGEU": "YEARS",
        "SEX": s.screening.sex,
        "ARMCD": arm[0],
        "ARM": arm[1],
        "ACTARMCD": actual[0],
        "ACTARM": actual[1],
        "COUNTRY": protocol.country,
        "DMDTC": s.screening.effective.isoformat(),
        "DMDY": sdtm_day(s.day1, s.screening.effective),
    }


def _arm(protocol: Protocol) -> str:
    dose = _number(protocol.treatment.target_cells_per_kg / 1e6)
    return f"MSC {dose} x 10^6 cells/kg intravenous"


def _end_of_participation(s: Subject, protocol: Protocol) -> dt.date | None:
    if s.status.died or s.status.withdrawn:
        return s.status.died or s.status.withdrawn
    if s.status.status == "completed" and s.day1 is not None:
        return day_date(s.day1, protocol.follow_up.window_days)
    return None


def _ex(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    for event in s.history.as_of(MSCInfused, as_of):
        infusion = event.record
        assert isinstance(infusion, MSCInfused)
        day = sdtm_day(s.day1, infusion.effective)
        yield {
            "EXSPID": event.id,
            "EXTRT": TREATMENT,
            "EXDOSE": _number(infusion.cells_per_kg),
            "EXDOSU": "cells/kg",
            "EXDOSFRM": "SUSPENSION",
            "EXROUTE": "INTRAVENOUS",
            "EXLOT": infusion.lot or "",
            "VISITNUM": infusion.course,
            "VISIT": f"COURSE {infusion.course}",
            "EXSTDTC": infusion.effective.isoformat(),
            "EXENDTC": infusion.effective.isoformat(),
            "EXSTDY": day,
            "EXENDY": day,
        }


def _lb(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    for event in s.history.as_of(CMVLoadMeasured, as_of):
        sample = event.record
        assert isinstance(sample, CMVLoadMeasured)
        result = {
            "not_detected": "NOT DETECTED",
            "below_lloq": f"<{_number(sample.lloq_iu_ml)}",
            "above_uloq": ">ULOQ",
            "quantified": _number(sample.value_iu_ml),
        }[sample.result]
        yield {
            "LBSPID": event.id,
            "LBTESTCD": "CMVDNA",
            "LBTEST": "Cytomegalovirus DNA",
            "LBCAT": "VIROLOGY",
            "LBORRES": result,
            "LBORRESU": "IU/mL",
            "LBSTRESC": result,
            "LBSTRESN": _number(sample.value_iu_ml),
            "LBSTRESU": "IU/mL",
            "LBSPEC": sample.specimen.replace("_", " ").upper(),
            "LBMETHOD": sample.assay,
            "LBLLOQ": _number(sample.lloq_iu_ml),
            "LBDTC": sample.effective.isoformat(),
            "LBDY": sdtm_day(s.day1, sample.effective),
        }


def _ae(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    for ae in adverse_events(s.history, as_of):
        report = ae.report.record
        yield {
            "AESPID": ae.ae_id,
            "AEREFID": ae.report.id,
            "AETERM": report.term,  # type: ignore[attr-defined]
            "AEDECOD": "",
            "AECAT": ae.category.upper(),
            "AESER": "Y" if ae.serious else "N",
            "AESEV": SEVERITY.get(ae.grade, "SEVERE"),
            "AETOXGR": ae.grade,
            "AEREL": report.causality.upper(),  # type: ignore[attr-defined]
            "AEOUT": OUTCOMES.get(ae.outcome or "", ""),
            **{name: "Y" if criterion in ae.criteria else "N" for name, criterion in CRITERIA.items()},
            "AESTDTC": ae.onset.isoformat(),
            "AEENDTC": _iso(ae.resolved_date),
            "AESTDY": sdtm_day(s.day1, ae.onset),
            "AEENDY": sdtm_day(s.day1, ae.resolved_date),
        }


def _ds(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    status = s.status

    def row(spid: str, term: str, decod: str, category: str, date: dt.date) -> dict[str, Any]:
        return {
            "DSSPID": spid,
            "DSTERM": term,
            "DSDECOD": decod,
            "DSCAT": category,
            "DSSTDTC": date.isoformat(),
            "DSSTDY": sdtm_day(s.day1, date),
        }

    milestone, disposition = "PROTOCOL MILESTONE", "DISPOSITION EVENT"
    screening = s.history.as_of(ParticipantScreened, as_of)[-1]
    if s.screening.consent_date <= as_of:
        consent = "INFORMED CONSENT OBTAINED"
        yield row(screening.id, consent, consent, milestone, s.screening.consent_date)
    if status.status == "screen_failed":
        yield row(
            screening.id,
            "; ".join(status.screen_failures)[:200],
            "SCREEN FAILURE",
            disposition,
            s.screening.effective,
        )
    for event in s.history.as_of(ParticipantEnrolled, as_of)[:1]:
        yield row(event.id, "ENROLLED", "ENROLLED", milestone, event.effective)
    for event in s.history.as_of(ParticipantWithdrew, as_of):
        reason = event.record.reason  # type: ignore[attr-defined]
        yield row(event.id, reason, "WITHDRAWAL BY SUBJECT", disposition, event.effective)
    for event in s.history.as_of(ParticipantDied, as_of):
        cause = event.record.cause or "DEATH"  # type: ignore[attr-defined]
        yield row(event.id, cause, "DEATH", disposition, event.effective)
    end = _end_of_participation(s, protocol)
    if status.status == "completed" and end is not None:
        yield row("", "COMPLETED FOLLOW-UP", "COMPLETED", disposition, end)


Builder = Callable[[Subject, Protocol, dt.date], Iterator[dict[str, Any]]]
BUILDERS: dict[str, Builder] = {"DM": _dm, "EX": _ex, "LB": _lb, "AE": _ae, "DS": _ds}
DATE_COLUMNS = {"EX": "EXSTDTC", "LB": "LBDTC", "AE": "AESTDTC", "DS": "DSSTDTC"}


# OWASP CSV injection: a cell starting with one of these runs as a spreadsheet
# formula, unless it is a plain number (a study day of -1, a value of -1.5).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text and never runs (issue 11: text is text).

    A text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is
    prefixed with ``'``; control characters a store of an older version may hold
    are escaped (:func:`ledger.domain.text.printable`); numbers stay as they are.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    return printable(value)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: spreadsheet_cell(v) for k, v in row.items()})


def _number(value: float | None) -> str:
    """A number without exponent or trailing zeros (1000000.0 -> 1000000)."""
    if value is None:
        return ""
    return format(Decimal(repr(value)).normalize(), "f")


def _iso(date: dt.date | None) -> str:
    return "" if date is None else date.isoformat()
