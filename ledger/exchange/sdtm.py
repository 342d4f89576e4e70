"""SDTMIG 3.4 datasets of the ledger: SAS XPORT or CSV, Define-XML 2.1, conformance (issues #6, 15).

``export sdtm DIR`` writes DM, EX, LB (CMV DNA), AE and DS, and the SUPP--
datasets that have records (values with no standard variable, text over 200
characters), as SAS XPORT v5 files (``dm.xpt``; :mod:`ledger.exchange.xport`),
CSV files (``dm.csv`` with ``define.csv``) or both; ``define.xml`` (Define-XML
2.1, :mod:`ledger.exchange.define`), and ``export.json``: what was exported, as
of which dates, whether the data were locked then, and the conformance findings
(:mod:`ledger.exchange.conformance`).  The datasets and their metadata are
described once, in :mod:`ledger.exchange.sdtmig`.

Values are those of ``--as-of`` (only events effective on or before it count;
adverse events with their updates effective by then) as known at
``--known-at`` (corrections recorded by then applied, voided events left out):
the read models of :mod:`projections`.  ``RFSTDTC`` is day 1, the first
infusion; study days (``--DY``) count from it with no day 0, as SDTM does: the
day before day 1 is day -1.  ``--SPID`` is the ledger event id, so every row
traces back to the audit trail.  Participants never treated have null
ARMCD/ARM or ACTARMCD/ACTARM with ARMNRS saying why (SDTMIG 3.3+), a null
RFENDTC and their end of participation in RFPENDTC.
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
    AdverseEventCoded,
    AdverseEventReported,
    CMVLoadMeasured,
    MSCInfused,
    ParticipantDied,
    ParticipantEnrolled,
    ParticipantScreened,
    ParticipantWithdrew,
    utc_text,
)
from ledger.domain.protocol import Protocol
from ledger.domain.rules.coding import current_codings
from ledger.domain.rules.corrections import ParticipantHistory, fold
from ledger.domain.rules.endpoints import judged
from ledger.domain.rules.safety import adverse_events
from ledger.domain.rules.status import ParticipantStatus
from ledger.domain.rules.treatment import day_date
from ledger.domain.rules.versions import ProtocolVersions
from ledger.domain.text import printable
from ledger.exchange.conformance import check, conformance_report
from ledger.exchange.define import StudyMetadata, write_define
from ledger.exchange.sdtmig import (
    CRITERIA,
    NOT_ASSIGNED,
    NOT_TREATED,
    QUALIFIERS,
    SCREEN_FAILURE,
    SDTMIG_VERSION,
    SPECS,
    Dataset,
)
from ledger.exchange.xport import MAX_TEXT, ascii_text, chunks, write_xpt

TREATMENT = "MESENCHYMAL STEM CELLS"
SEVERITY = {1: "MILD", 2: "MODERATE"}  # CTCAE grade 3 and above: SEVERE
OUTCOMES = {
    "recovered": "RECOVERED/RESOLVED",
    "recovering": "RECOVERING/RESOLVING",
    "not_recovered": "NOT RECOVERED/NOT RESOLVED",
    "recovered_with_sequelae": "RECOVERED/RESOLVED WITH SEQUELAE",
    "fatal": "FATAL",
}
FORMATS = ("xpt", "csv", "both")


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
    protocol: Protocol  # the version that judges this participant

    @property
    def day1(self) -> dt.date | None:
        return self.status.first_infusion


@dataclass(frozen=True)
class Altered:
    """A ledger text that SAS XPORT cannot carry as it is, and what it became (ASCII only)."""

    dataset: str
    usubjid: str
    variable: str
    value: str

    def to_json(self) -> dict[str, str]:
        return {
            "dataset": self.dataset,
            "usubjid": self.usubjid,
            "variable": self.variable,
            "value": self.value,
        }


@dataclass(frozen=True)
class Submission:
    """The datasets of one export, in SDTMIG order, and the texts made ASCII on the way."""

    datasets: dict[str, Dataset]
    altered: tuple[Altered, ...]
    dictionaries: tuple[str, ...]  # the coding dictionaries and versions of the AEs exported


def export_sdtm(
    entries: Iterable[Entry],
    protocol: Protocol,
    directory: str | Path,
    *,
    as_of: dt.date,
    known_at: dt.datetime | None,
    created: dt.datetime,
    format: str = "xpt",
    shown_as: str | Path | None = None,
    versions: ProtocolVersions | None = None,
) -> dict[str, Any]:
    """Write the datasets, ``define.xml`` and ``export.json`` into ``directory``; the summary.

    ``format`` is ``xpt`` (SAS XPORT v5, what a submission needs), ``csv`` (with
    ``define.csv``) or ``both``.  SUPP-- datasets without records are not written.
    ``shown_as`` is the folder the summary names, when ``directory`` is a
    temporary folder whose files are moved there afterwards (issue 11).
    ``versions``: see :func:`build_datasets`.
    """
    chosen = list(entries)
    submission = build_datasets(chosen, protocol, as_of, versions)
    written = {name: d for name, d in submission.datasets.items() if d.rows or name in PARENT_NAMES}
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for dataset in written.values():
        if format in ("xpt", "both"):
            write_xpt(dataset, out / f"{dataset.name.lower()}.xpt")
            files.append(f"{dataset.name.lower()}.xpt")
        if format in ("csv", "both"):
            rows = [{k: _csv_value(v) for k, v in row.items()} for row in dataset.rows]
            _write_csv(out / f"{dataset.name.lower()}.csv", dataset.spec.columns, rows)
            files.append(f"{dataset.name.lower()}.csv")
    if format in ("csv", "both"):
        _write_csv(out / "define.csv", DEFINE_CSV_COLUMNS, _define_rows(written.values()))
        files.append("define.csv")
    study = StudyMetadata(protocol.study, protocol.title, _arm(protocol), tuple(protocol.sites))
    sole = submission.dictionaries[0] if len(submission.dictionaries) == 1 else None
    define = write_define(written, study, out / "define.xml", created=created, format=format, dictionary=sole)
    files.append("define.xml")
    findings = check(written)
    summary = {
        "dir": str(shown_as or out),
        "study": protocol.study,
        "sdtmig": SDTMIG_VERSION,
        "as_of": as_of.isoformat(),
        "known_at": utc_text(known_at or created),
        "created": utc_text(created),
        "events": len(chosen),
        "format": format,
        "datasets": {name: len(d.rows) for name, d in written.items()},
        "files": files,
        "define": define,
        "dictionaries": list(submission.dictionaries),
        "conformance": conformance_report(findings),
        "altered_for_transport": [a.to_json() for a in submission.altered],
        "lock": lock_state(chosen).to_json(),
    }
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def build_datasets(
    entries: Iterable[Entry], protocol: Protocol, as_of: dt.date, versions: ProtocolVersions | None = None
) -> Submission:
    """The SDTM datasets of ``entries`` as of ``as_of``: parents, then SUPP--, ready for transport.

    Rows of a subject are ordered by their date and numbered (``--SEQ``); text is
    made ASCII; a value over 200 characters keeps its first 200 and puts the rest
    in SUPP-- (``QNAM`` the variable's first 7 letters and 1, 2, ...); qualifiers a
    builder gives under ``SUPP`` become SUPP-- records of their row.  ``protocol``
    gives the study-level values; each participant is judged under the version of
    ``versions`` in force for them (SPEC section 2; default: ``protocol`` alone).
    """
    judging = versions if versions is not None else ProtocolVersions.only(protocol)
    subjects = _subjects(list(entries), protocol, judging, as_of)
    parents: dict[str, Dataset] = {}
    supps: dict[str, Dataset] = {}
    altered: list[Altered] = []
    for domain, build in BUILDERS.items():
        spec, supp_spec = SPECS[domain], SPECS[f"SUPP{domain}"]
        parents[domain], supps[supp_spec.name] = Dataset(spec), Dataset(supp_spec)
        for subject in subjects:
            made = list(build(subject, protocol, as_of))
            if domain in DATE_COLUMNS:
                made.sort(key=itemgetter(DATE_COLUMNS[domain]))
                for number, row in enumerate(made, start=1):
                    row[f"{domain}SEQ"] = number
            for row in made:
                qualifiers: dict[str, tuple[str, str]] = row.pop("SUPP", {})
                record = {"STUDYID": protocol.study, "DOMAIN": domain, "USUBJID": subject.usubjid, **row}
                for name, value in record.items():
                    if isinstance(value, str):
                        record[name] = _transport_text(value, domain, subject.usubjid, name, altered)
                parent = Parent(protocol.study, domain, subject.usubjid, record.get(f"{domain}SEQ"))
                for name, value in list(record.items()):
                    if isinstance(value, str) and len(value) > MAX_TEXT:
                        first, *rest = chunks(value)
                        record[name] = first
                        label = spec.variable(name).label
                        origin = spec.variable(name).origin
                        for n, piece in enumerate(rest, start=1):
                            supps[supp_spec.name].rows.append(
                                parent.qualifier(f"{name[:7]}{n}", label, piece, origin)
                            )
                for qnam, (value, origin) in qualifiers.items():
                    label = next(q.label for q in QUALIFIERS[domain] if q.qnam == qnam)
                    text = _transport_text(value, supp_spec.name, subject.usubjid, qnam, altered)
                    supps[supp_spec.name].rows.append(parent.qualifier(qnam, label, text, origin))
                parents[domain].rows.append(record)
    coded = {row["AESPID"] for row in parents["AE"].rows if row["AEDECOD"] is not None}
    dictionaries = sorted(
        {c.dictionary for s in subjects for ae_id, c in current_codings(s.history).items() if ae_id in coded}
    )
    return Submission({**parents, **supps}, tuple(altered), tuple(dictionaries))


@dataclass(frozen=True)
class Parent:
    """The record a supplemental qualifier belongs to (IDVAR ``--SEQ``; none for DM)."""

    study: str
    domain: str
    usubjid: str
    seq: int | None

    def qualifier(self, qnam: str, label: str, value: str, origin: str) -> dict[str, Any]:
        return {
            "STUDYID": self.study,
            "RDOMAIN": self.domain,
            "USUBJID": self.usubjid,
            "IDVAR": None if self.seq is None else f"{self.domain}SEQ",
            "IDVARVAL": None if self.seq is None else str(self.seq),
            "QNAM": qnam,
            "QLABEL": label,
            "QVAL": value,
            "QORIG": origin,
            "QEVAL": None,
        }


def _transport_text(value: str, dataset: str, usubjid: str, variable: str, altered: list[Altered]) -> str:
    text = ascii_text(value)
    if text != value:
        altered.append(Altered(dataset, usubjid, variable, text))
    return text


def _subjects(
    entries: list[Entry], protocol: Protocol, versions: ProtocolVersions, as_of: dt.date
) -> list[Subject]:
    """Every participant screened on or before ``as_of``, by site and number."""
    subjects = []
    for history, status, version in judged(fold(entries).values(), as_of, versions):
        screening = history.as_of(ParticipantScreened, as_of)[-1].record
        assert isinstance(screening, ParticipantScreened)
        usubjid = f"{protocol.study}-{status.participant}"
        subjects.append(Subject(history, status, usubjid, screening, version.protocol))
    return sorted(subjects, key=lambda s: (s.status.site, s.status.participant))


def _dm(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    status = s.status
    courses = status.course_dates
    arm = ("MSC", _arm(protocol)) if status.enrolled is not None else (None, None)
    actual = arm if courses else (None, None)
    if status.enrolled is None:
        reason = SCREEN_FAILURE if status.status == "screen_failed" else NOT_ASSIGNED
    else:
        reason = None if courses else NOT_TREATED
    end = _end_of_participation(s)
    if status.status == "screen_failed":
        end = s.screening.effective
    screening = s.screening
    yield {
        "SUBJID": status.participant,
        "RFSTDTC": _iso(s.day1),
        "RFENDTC": _iso(end) if courses else None,
        "RFXSTDTC": _iso(courses[0] if courses else None),
        "RFXENDTC": _iso(courses[-1] if courses else None),
        "RFICDTC": _iso(screening.consent_date if screening.consent_date <= as_of else None),
        "RFPENDTC": _iso(end),
        "DTHDTC": _iso(status.died),
        "DTHFL": "Y" if status.died else None,
        "SITEID": status.site,
        "AGE": screening.age_years,
        "AGEU": "YEARS",
        "SEX": screening.sex,
        "RACE": None,
        "ARMCD": arm[0],
        "ARM": arm[1],
        "ACTARMCD": actual[0],
        "ACTARM": actual[1],
        "ARMNRS": reason,
        "ACTARMUD": None,
        "COUNTRY": protocol.country,
        "DMDTC": screening.effective.isoformat(),
        "DMDY": sdtm_day(s.day1, screening.effective),
        "SUPP": {
            **(
                {"REFCMV": (screening.refractory_cmv.upper(), "Collected")}
                if screening.refractory_cmv
                else {}
            ),
            "ICBY": (screening.consent_by.upper(), "Collected"),
        },
    }


def _arm(protocol: Protocol) -> str:
    dose = _number(protocol.treatment.target_cells_per_kg / 1e6)
    return f"MSC {dose} x 10^6 cells/kg intravenous"


def _end_of_participation(s: Subject) -> dt.date | None:
    if s.status.died or s.status.withdrawn:
        return s.status.died or s.status.withdrawn
    if s.status.status == "completed" and s.day1 is not None:
        return day_date(s.day1, s.protocol.follow_up.window_days)
    return None


def _ex(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    for event in s.history.as_of(MSCInfused, as_of):
        infusion = event.record
        assert isinstance(infusion, MSCInfused)
        day = sdtm_day(s.day1, infusion.effective)
        yield {
            "EXSPID": event.id,
            "EXTRT": TREATMENT,
            "EXDOSE": infusion.cells_per_kg,
            "EXDOSU": "cells/kg",
            "EXDOSFRM": "SUSPENSION",
            "EXROUTE": "INTRAVENOUS",
            "EXLOT": infusion.lot,
            "VISITNUM": infusion.course,
            "VISIT": f"COURSE {infusion.course}",
            "EXSTDTC": infusion.effective.isoformat(),
            "EXENDTC": infusion.effective.isoformat(),
            "EXSTDY": day,
            "EXENDY": day,
        }


def _lb(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    samples = s.history.as_of(CMVLoadMeasured, as_of)
    before = [e for e in samples if s.day1 is not None and e.effective < s.day1]
    baseline = max(before, key=lambda e: (e.effective, e.position)).id if before else None
    for event in samples:
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
            "LBORNRLO": None,
            "LBORNRHI": _number(sample.lloq_iu_ml),
            "LBSTRESC": result,
            "LBSTRESN": sample.value_iu_ml,
            "LBSTRESU": "IU/mL",
            "LBSTNRLO": None,
            "LBSTNRHI": sample.lloq_iu_ml,
            "LBNRIND": "HIGH" if sample.result in ("quantified", "above_uloq") else "NORMAL",
            "LBSPEC": sample.specimen.replace("_", " ").upper(),
            "LBMETHOD": sample.assay,
            "LBLOBXFL": "Y" if event.id == baseline else None,
            "VISITNUM": None,
            "LBLLOQ": sample.lloq_iu_ml,
            "LBDTC": sample.effective.isoformat(),
            "LBDY": sdtm_day(s.day1, sample.effective),
        }


def _ae(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    codings = current_codings(s.history)
    for ae in adverse_events(s.history, as_of):
        report = ae.report.record
        assert isinstance(report, AdverseEventReported)
        yield {
            "AEREFID": ae.report.id,
            "AESPID": ae.ae_id,
            "AETERM": report.term,
            **_coded(codings.get(ae.ae_id)),
            "AECAT": ae.category.upper(),
            "AESEV": SEVERITY.get(ae.grade, "SEVERE"),
            "AESER": "Y" if ae.serious else "N",
            "AEACN": None,
            "AEREL": report.causality.upper(),
            "AEOUT": OUTCOMES.get(ae.outcome or ""),
            **{name: "Y" if criterion in ae.criteria else "N" for name, (criterion, _) in CRITERIA.items()},
            "AETOXGR": str(ae.grade),
            "AESTDTC": ae.onset.isoformat(),
            "AEENDTC": _iso(ae.resolved_date),
            "AESTDY": sdtm_day(s.day1, ae.onset),
            "AEENDY": sdtm_day(s.day1, ae.resolved_date),
            "SUPP": {"AEAWARE": (utc_text(report.aware_at), "Collected")},
        }


def _ds(s: Subject, protocol: Protocol, as_of: dt.date) -> Iterator[dict[str, Any]]:
    status = s.status

    def row(spid: str | None, term: str, decod: str, category: str, date: dt.date) -> dict[str, Any]:
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
        failures = "; ".join(status.screen_failures)
        yield row(screening.id, failures, SCREEN_FAILURE, disposition, s.screening.effective)
    for event in s.history.as_of(ParticipantEnrolled, as_of)[:1]:
        yield row(event.id, "ENROLLED", "ENROLLED", milestone, event.effective)
    for event in s.history.as_of(ParticipantWithdrew, as_of):
        reason = event.record.reason  # type: ignore[attr-defined]
        yield row(event.id, reason, "WITHDRAWAL BY SUBJECT", disposition, event.effective)
    for event in s.history.as_of(ParticipantDied, as_of):
        cause = event.record.cause or "DEATH"  # type: ignore[attr-defined]
        yield row(event.id, cause, "DEATH", disposition, event.effective)
    end = _end_of_participation(s)
    if status.status == "completed" and end is not None:
        yield row(None, "COMPLETED FOLLOW-UP", "COMPLETED", disposition, end)


def _coded(coding: AdverseEventCoded | None) -> dict[str, Any]:
    """The dictionary-derived variables of an AE from its coding; null while it is not coded."""
    if coding is None:
        return dict.fromkeys(CODED)
    return {
        "AELLT": coding.llt,
        "AELLTCD": coding.llt_code,
        "AEDECOD": coding.pt,
        "AEPTCD": coding.pt_code,
        "AEHLT": coding.hlt,
        "AEHLTCD": coding.hlt_code,
        "AEHLGT": coding.hlgt,
        "AEHLGTCD": coding.hlgt_code,
        "AEBODSYS": coding.soc,
        "AEBDSYCD": coding.soc_code,
        "AESOC": coding.soc,
        "AESOCCD": coding.soc_code,
    }


Builder = Callable[[Subject, Protocol, dt.date], Iterator[dict[str, Any]]]
BUILDERS: dict[str, Builder] = {"DM": _dm, "EX": _ex, "LB": _lb, "AE": _ae, "DS": _ds}
PARENT_NAMES = tuple(BUILDERS)
DATE_COLUMNS = {"EX": "EXSTDTC", "LB": "LBDTC", "AE": "AESTDTC", "DS": "DSSTDTC"}
# The dictionary-derived variables of AE (null until the AE is coded), in the order of _coded.
CODED = (
    "AELLT",
    "AELLTCD",
    "AEDECOD",
    "AEPTCD",
    "AEHLT",
    "AEHLTCD",
    "AEHLGT",
    "AEHLGTCD",
    "AEBODSYS",
    "AEBDSYCD",
    "AESOC",
    "AESOCCD",
)
DEFINE_CSV_COLUMNS = ["DATASET", "VARIABLE", "LABEL", "TYPE", "CORE", "ORIGIN", "COMMENT"]


def _define_rows(datasets: Iterable[Dataset]) -> list[dict[str, Any]]:
    """``define.csv``: every variable of every dataset written, for readers of the CSV files."""
    return [
        {
            "DATASET": d.name,
            "VARIABLE": v.name,
            "LABEL": v.label,
            "TYPE": v.type,
            "CORE": v.core,
            "ORIGIN": v.origin,
            "COMMENT": v.comment,
        }
        for d in datasets
        for v in d.spec.variables
    ]


def _csv_value(value: Any) -> Any:
    """A CSV cell: numbers without exponent or trailing zeros, null as empty."""
    if isinstance(value, float):
        return _number(value)
    return value


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
