"""SDTMIG 3.4 metadata of the ledger's datasets: variables, core designations, codelists (issue 15).

Each dataset the submission export writes is described here once: its class,
structure and keys, and every variable with its SDTMIG label, type, core
designation (``Req`` never null, ``Exp`` always present, ``Perm`` when
collected), Define-XML 2.1 origin, the derivation or comment that explains it,
and its codelist.  ``define.xml``, ``define.csv``, the transport files and the
conformance checks all read this one description, so they cannot disagree.

Origins are Define-XML 2.1's: ``Collected`` (entered at the site), ``Derived``
(computed by the export; the comment is the method), ``Assigned`` (set by the
sponsor's mapping), ``Not Available`` (an Expected variable the ledger does not
collect: present, null, and said so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.domain.events import CATEGORIES

SDTMIG_VERSION = "3.4"
CORES = ("Req", "Exp", "Perm")
ORIGINS = ("Collected", "Derived", "Assigned", "Not Available")
# SDTMIG 3.3+: ARMCD/ARM and ACTARMCD/ACTARM are null with ARMNRS saying why.
SCREEN_FAILURE = "SCREEN FAILURE"
NOT_ASSIGNED = "NOT ASSIGNED"
NOT_TREATED = "ASSIGNED, NOT TREATED"


@dataclass(frozen=True)
class Variable:
    """One variable of a dataset as the SDTMIG and ``define.xml`` describe it."""

    name: str
    label: str
    type: str = "Char"  # or "Num"
    core: str = "Perm"
    origin: str = "Collected"
    comment: str = ""
    codelist: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: name, label, observation class, structure, keys and variables."""

    name: str
    label: str
    observation_class: str
    structure: str
    keys: tuple[str, ...]
    variables: tuple[Variable, ...]

    def variable(self, name: str) -> Variable:
        return next(v for v in self.variables if v.name == name)

    @property
    def columns(self) -> list[str]:
        return [v.name for v in self.variables]

    @property
    def parent(self) -> str:
        """The parent domain of a SUPP-- dataset (``SUPPAE`` -> ``AE``), else the dataset itself."""
        return self.name.removeprefix("SUPP")


@dataclass(frozen=True)
class Dataset:
    """A dataset with its rows: one dict per record, ``None`` for a null value."""

    spec: DatasetSpec
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Codelist:
    """Controlled terms of a variable: coded value and decode (``None``: the value says it all)."""

    name: str
    terms: tuple[tuple[str, str | None], ...] = ()
    data_type: str = "text"
    dictionary: str | None = None  # an external dictionary (MedDRA, ISO 3166) instead of terms


def _v(
    name: str,
    label: str,
    core: str = "Perm",
    origin: str = "Collected",
    comment: str = "",
    *,
    type: str = "Char",
    codelist: str | None = None,
) -> Variable:
    return Variable(name, label, type, core, origin, comment, codelist)


def _identifiers(domain: str) -> list[Variable]:
    return [
        _v("STUDYID", "Study Identifier", "Req", "Assigned", "the protocol's study code"),
        _v("DOMAIN", "Domain Abbreviation", "Req", "Assigned", domain),
        _v("USUBJID", "Unique Subject Identifier", "Req", "Derived", "STUDYID, hyphen, participant code"),
    ]


def _seq(domain: str, order: str) -> list[Variable]:
    return [
        _v(
            f"{domain}SEQ",
            "Sequence Number",
            "Req",
            "Derived",
            f"1, 2, ... by {order} within subject",
            type="Num",
        ),
        _v(f"{domain}SPID", "Sponsor-Defined Identifier", "Perm", "Assigned", "the ledger event id"),
    ]


def _day(domain: str, which: str, label: str, of: str) -> Variable:
    method = f"{of} minus RFSTDTC, plus 1 on or after RFSTDTC (no day 0); null without RFSTDTC"
    return _v(f"{domain}{which}DY", label, "Perm", "Derived", method, type="Num")


def _flag(name: str, label: str, core: str = "Perm", comment: str = "") -> Variable:
    return _v(name, label, core, "Collected", comment, codelist="NY")


def _meddra(level: str, label: str) -> list[Variable]:
    """A MedDRA level of the AE's latest coding as known at the export's moment: term and code."""
    where = f"{label.lower()} of the latest coding as known at the export's moment"
    return [
        _v(f"AE{level}", label, "Exp", "Assigned", where, codelist="MEDDRA"),
        _v(f"AE{level}CD", f"{label} Code", "Exp", "Assigned", f"{where}, its code", type="Num"),
    ]


DM = DatasetSpec(
    "DM",
    "Demographics",
    "SPECIAL PURPOSE",
    "One record per subject",
    ("STUDYID", "USUBJID"),
    (
        *_identifiers("DM"),
        _v("SUBJID", "Subject Identifier for the Study", "Req", comment="participant code <SITE>-<NNN>"),
        _v("RFSTDTC", "Subject Reference Start Date/Time", "Exp", "Derived", "first infusion (day 1)"),
        _v(
            "RFENDTC",
            "Subject Reference End Date/Time",
            "Exp",
            "Derived",
            "death, withdrawal or end of follow-up of a treated participant; null when never treated",
        ),
        _v("RFXSTDTC", "Date/Time of First Study Treatment", "Exp", "Derived", "first infusion"),
        _v("RFXENDTC", "Date/Time of Last Study Treatment", "Exp", "Derived", "last infusion"),
        _v("RFICDTC", "Date/Time of Informed Consent", "Exp", comment="consent_date"),
        _v(
            "RFPENDTC",
            "Date/Time of End of Participation",
            "Exp",
            "Derived",
            "death, withdrawal, end of follow-up, or the screening date of a screen failure",
        ),
        _v("DTHDTC", "Date/Time of Death", "Exp", comment="ParticipantDied effective date"),
        _v(
            "DTHFL",
            "Subject Death Flag",
            "Exp",
            "Derived",
            "Y when a death is recorded, else null",
            codelist="NY",
        ),
        _v("SITEID", "Study Site Identifier", "Req", codelist="SITEID"),
        _v("AGE", "Age", "Exp", comment="age_years at screening, standing for the consent date", type="Num"),
        _v("AGEU", "Age Units", "Exp", "Assigned", codelist="AGEU"),
        _v("SEX", "Sex", "Req", codelist="SEX"),
        _v("RACE", "Race", "Exp", "Not Available", "not collected: the ledger holds no race"),
        _v("ARMCD", "Planned Arm Code", "Exp", "Derived", "MSC when enrolled, else null", codelist="ARMCD"),
        _v("ARM", "Description of Planned Arm", "Exp", "Derived", "the arm of ARMCD", codelist="ARM"),
        _v("ACTARMCD", "Actual Arm Code", "Exp", "Derived", "MSC when infused, else null", codelist="ARMCD"),
        _v("ACTARM", "Description of Actual Arm", "Exp", "Derived", "the arm of ACTARMCD", codelist="ARM"),
        _v(
            "ARMNRS",
            "Reason Arm and/or Actual Arm is Null",
            "Exp",
            "Derived",
            "SCREEN FAILURE, NOT ASSIGNED (screened, not enrolled) or ASSIGNED, NOT TREATED",
            codelist="ARMNRS",
        ),
        _v(
            "ACTARMUD",
            "Description of Unplanned Actual Arm",
            "Exp",
            "Derived",
            "always null: the ledger refuses an infusion before enrollment, so no treatment is unplanned",
        ),
        _v(
            "COUNTRY",
            "Country",
            "Req",
            "Assigned",
            "the protocol's country of every site",
            codelist="COUNTRY",
        ),
        _v("DMDTC", "Date/Time of Collection", "Perm", comment="screening date"),
        _day("DM", "", "Study Day of Collection", "DMDTC"),
    ),
)

EX = DatasetSpec(
    "EX",
    "Exposure",
    "INTERVENTIONS",
    "One record per constant dosing interval per subject",
    ("STUDYID", "USUBJID", "EXTRT", "EXSTDTC"),
    (
        *_identifiers("EX"),
        *_seq("EX", "infusion date"),
        _v("EXTRT", "Name of Treatment", "Req", "Assigned", codelist="EXTRT"),
        _v("EXDOSE", "Dose", "Exp", comment="cells_per_kg", type="Num"),
        _v("EXDOSU", "Dose Units", "Exp", "Assigned", codelist="UNIT"),
        _v("EXDOSFRM", "Dose Form", "Exp", "Assigned", codelist="FRM"),
        _v("EXROUTE", "Route of Administration", "Perm", "Assigned", codelist="ROUTE"),
        _v("EXLOT", "Lot Number", "Perm", comment="lot"),
        _v("VISITNUM", "Visit Number", "Perm", comment="course", type="Num"),
        _v("VISIT", "Visit Name", "Perm", "Derived", "COURSE and the course number"),
        _v("EXSTDTC", "Start Date/Time of Treatment", "Exp", comment="infusion date"),
        _v("EXENDTC", "End Date/Time of Treatment", "Exp", comment="infusion date (one infusion a course)"),
        _day("EX", "ST", "Study Day of Start of Treatment", "EXSTDTC"),
        _day("EX", "EN", "Study Day of End of Treatment", "EXENDTC"),
    ),
)

LB = DatasetSpec(
    "LB",
    "Laboratory Test Results",
    "FINDINGS",
    "One record per lab test per time point per visit per subject",
    ("STUDYID", "USUBJID", "LBTESTCD", "LBSPEC", "LBDTC", "LBSEQ"),
    (
        *_identifiers("LB"),
        *_seq("LB", "sample date"),
        _v("LBTESTCD", "Lab Test or Examination Short Name", "Req", "Assigned", codelist="LBTESTCD"),
        _v("LBTEST", "Lab Test or Examination Name", "Req", "Assigned", codelist="LBTEST"),
        _v("LBCAT", "Category for Lab Test", "Exp", "Assigned", codelist="LBCAT"),
        _v(
            "LBORRES",
            "Result or Finding in Original Units",
            "Exp",
            "Derived",
            "value_iu_ml, NOT DETECTED, <LLOQ or >ULOQ from result",
        ),
        _v("LBORRESU", "Original Units", "Exp", "Assigned", codelist="UNIT"),
        _v(
            "LBORNRLO",
            "Reference Range Lower Limit in Orig Unit",
            "Exp",
            "Derived",
            "null: a viral load has no lower reference limit",
        ),
        _v(
            "LBORNRHI",
            "Reference Range Upper Limit in Orig Unit",
            "Exp",
            "Derived",
            "the assay's LLOQ: below it the result is negative, as the protocol counts it",
        ),
        _v("LBSTRESC", "Character Result/Finding in Std Format", "Exp", "Derived", "LBORRES"),
        _v(
            "LBSTRESN",
            "Numeric Result/Finding in Standard Units",
            "Exp",
            "Derived",
            "quantified results only",
            type="Num",
        ),
        _v("LBSTRESU", "Standard Units", "Exp", "Assigned", codelist="UNIT"),
        _v(
            "LBSTNRLO",
            "Reference Range Lower Limit-Std Units",
            "Exp",
            "Derived",
            "null: a viral load has no lower reference limit",
            type="Num",
        ),
        _v(
            "LBSTNRHI",
            "Reference Range Upper Limit-Std Units",
            "Exp",
            "Derived",
            "the assay's LLOQ",
            type="Num",
        ),
        _v(
            "LBNRIND",
            "Reference Range Indicator",
            "Exp",
            "Derived",
            "NORMAL when not detected or below the LLOQ, HIGH when quantified or above the ULOQ",
            codelist="NRIND",
        ),
        _v("LBSPEC", "Specimen Type", "Perm", comment="specimen", codelist="SPECTYPE"),
        _v("LBMETHOD", "Method of Test or Examination", "Perm", comment="assay"),
        _v(
            "LBLOBXFL",
            "Last Observation Before Exposure Flag",
            "Exp",
            "Derived",
            "Y on the last result sampled before the first infusion",
            codelist="NY",
        ),
        _v(
            "VISITNUM",
            "Visit Number",
            "Exp",
            "Not Available",
            "null: the ledger records CMV samples by date, not by visit",
            type="Num",
        ),
        _v("LBLLOQ", "Lower Limit of Quantitation", "Perm", comment="lloq_iu_ml", type="Num"),
        _v("LBDTC", "Date/Time of Specimen Collection", "Exp", comment="sample date (effective)"),
        _day("LB", "", "Study Day of Specimen Collection", "LBDTC"),
    ),
)

CRITERIA = {
    "AESCONG": ("congenital_anomaly", "Congenital Anomaly or Birth Defect"),
    "AESDISAB": ("disability", "Persist or Signif Disability/Incapacity"),
    "AESDTH": ("death", "Results in Death"),
    "AESHOSP": ("hospitalisation", "Requires or Prolongs Hospitalization"),
    "AESLIFE": ("life_threatening", "Is Life Threatening"),
    "AESMIE": ("important_medical_event", "Other Medically Important Serious Event"),
}

AE = DatasetSpec(
    "AE",
    "Adverse Events",
    "EVENTS",
    "One record per adverse event per subject",
    ("STUDYID", "USUBJID", "AEDECOD", "AESTDTC", "AESEQ"),
    (
        *_identifiers("AE"),
        _v("AESEQ", "Sequence Number", "Req", "Derived", "1, 2, ... by onset within subject", type="Num"),
        _v("AEREFID", "Reference ID", "Perm", "Assigned", "the ledger event id of the report"),
        _v("AESPID", "Sponsor-Defined Identifier", "Perm", comment="ae_id, the site's AE number"),
        _v("AETERM", "Reported Term for the Adverse Event", "Req", comment="term"),
        *_meddra("LLT", "Lowest Level Term"),
        _v(
            "AEDECOD",
            "Dictionary-Derived Term",
            "Req",
            "Assigned",
            "preferred term of the latest coding as known at the export's moment",
            codelist="MEDDRA",
        ),
        _v(
            "AEPTCD",
            "Preferred Term Code",
            "Exp",
            "Assigned",
            "preferred term code of the latest coding",
            type="Num",
        ),
        *_meddra("HLT", "High Level Term"),
        *_meddra("HLGT", "High Level Group Term"),
        _v("AECAT", "Category for Adverse Event", "Perm", comment="category", codelist="AECAT"),
        _v(
            "AEBODSYS",
            "Body System or Organ Class",
            "Exp",
            "Assigned",
            "system organ class of the latest coding (primary SOC)",
            codelist="MEDDRA",
        ),
        _v(
            "AEBDSYCD",
            "Body System or Organ Class Code",
            "Exp",
            "Assigned",
            "system organ class code",
            type="Num",
        ),
        _v(
            "AESOC",
            "Primary System Organ Class",
            "Exp",
            "Assigned",
            "system organ class of the latest coding",
            codelist="MEDDRA",
        ),
        _v(
            "AESOCCD",
            "Primary System Organ Class Code",
            "Exp",
            "Assigned",
            "system organ class code",
            type="Num",
        ),
        _v(
            "AESEV",
            "Severity/Intensity",
            "Perm",
            "Derived",
            "CTCAE grade 1 MILD, 2 MODERATE, 3-5 SEVERE",
            codelist="AESEV",
        ),
        _flag("AESER", "Serious Event", "Exp", "serious, after updates effective by the as-of date"),
        _v(
            "AEACN",
            "Action Taken with Study Treatment",
            "Exp",
            "Not Available",
            "not collected: the ledger's AE record has no action taken",
        ),
        _v("AEREL", "Causality", "Exp", comment="WHO-UMC causality to MSC", codelist="AEREL"),
        _v(
            "AEOUT",
            "Outcome of Adverse Event",
            "Perm",
            comment="outcome of the latest update",
            codelist="OUT",
        ),
        *[
            _flag(name, label, comment=f"criteria holds {criterion}")
            for name, (criterion, label) in CRITERIA.items()
        ],
        _v(
            "AETOXGR",
            "Standard Toxicity Grade",
            "Perm",
            comment="CTCAE grade after updates",
            codelist="TOXGR",
        ),
        _v("AESTDTC", "Start Date/Time of Adverse Event", "Exp", comment="onset (effective)"),
        _v("AEENDTC", "End Date/Time of Adverse Event", "Exp", comment="resolved_date"),
        _day("AE", "ST", "Study Day of Start of Adverse Event", "AESTDTC"),
        _day("AE", "EN", "Study Day of End of Adverse Event", "AEENDTC"),
    ),
)

DS = DatasetSpec(
    "DS",
    "Disposition",
    "EVENTS",
    "One record per disposition status or protocol milestone per subject",
    ("STUDYID", "USUBJID", "DSDECOD", "DSSTDTC"),
    (
        *_identifiers("DS"),
        *_seq("DS", "date"),
        _v(
            "DSTERM",
            "Reported Term for the Disposition Event",
            "Req",
            comment="withdrawal reason, cause of death, failed eligibility criteria, or the milestone",
        ),
        _v(
            "DSDECOD",
            "Standardized Disposition Term",
            "Req",
            "Derived",
            "from the ledger event type",
            codelist="DSDECOD",
        ),
        _v(
            "DSCAT",
            "Category for Disposition Event",
            "Exp",
            "Derived",
            "from the ledger event type",
            codelist="DSCAT",
        ),
        _v("DSSTDTC", "Start Date/Time of Disposition Event", "Exp", comment="effective date of the event"),
        _day("DS", "ST", "Study Day of Start of Disposition Event", "DSSTDTC"),
    ),
)


def supp(parent: DatasetSpec) -> DatasetSpec:
    """The SUPP-- dataset of ``parent``: values with no standard variable (SDTMIG 8.4)."""
    rdomain = parent.name
    idvar = "" if rdomain == "DM" else f"{rdomain}SEQ"
    return DatasetSpec(
        f"SUPP{rdomain}",
        f"Supplemental Qualifiers for {rdomain}",
        "RELATIONSHIP",
        "One record per IDVAR, IDVARVAL, and QNAM value per subject",
        ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM"),
        (
            _v("STUDYID", "Study Identifier", "Req", "Assigned", "the protocol's study code"),
            _v("RDOMAIN", "Related Domain Abbreviation", "Req", "Assigned", rdomain),
            _v("USUBJID", "Unique Subject Identifier", "Req", "Derived", "USUBJID of the parent record"),
            _v("IDVAR", "Identifying Variable", "Exp", "Assigned", idvar or "null: one value per subject"),
            _v(
                "IDVARVAL",
                "Identifying Variable Value",
                "Exp",
                "Derived",
                f"{idvar} of the parent record" if idvar else "null: one value per subject",
            ),
            _v("QNAM", "Qualifier Variable Name", "Req", "Assigned", codelist="QNAM"),
            _v("QLABEL", "Qualifier Variable Label", "Req", "Assigned"),
            _v("QVAL", "Data Value", "Req", "Derived", "see the value-level metadata of QNAM"),
            _v("QORIG", "Origin", "Req", "Assigned"),
            _v("QEVAL", "Evaluator", "Exp", "Assigned", "null: values entered at the site"),
        ),
    )


@dataclass(frozen=True)
class Qualifier:
    """A supplemental qualifier: its QNAM, label, origin and what it holds."""

    qnam: str
    label: str
    origin: str
    comment: str


QUALIFIERS: dict[str, tuple[Qualifier, ...]] = {
    "DM": (
        Qualifier(
            "REFCMV", "Refractory CMV at Screening", "Collected", "refractory_cmv: INFECTION or DISEASE"
        ),
        Qualifier(
            "ICBY", "Informed Consent Signed By", "Collected", "consent_by: PARTICIPANT or REPRESENTATIVE"
        ),
    ),
    "AE": (
        Qualifier("AEAWARE", "Date/Time Site Became Aware of AE", "Collected", "aware_at, UTC, ISO 8601"),
    ),
}
PARENTS = (DM, EX, LB, AE, DS)
# Every parent has its SUPP--: qualifiers above, and text over 200 characters,
# whose first 200 stay in the variable and the rest go to SUPP-- (SDTMIG 4.5.3.2).
SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (*PARENTS, *(supp(p) for p in PARENTS))}

CODELISTS: dict[str, Codelist] = {
    "NY": Codelist("No Yes Response", (("Y", "Yes"), ("N", "No"))),
    "SEX": Codelist("Sex", (("M", "Male"), ("F", "Female"), ("U", "Unknown"))),
    "AGEU": Codelist("Age Unit", (("YEARS", None),)),
    "ARMNRS": Codelist(
        "Reason for Null Arm", ((SCREEN_FAILURE, None), (NOT_ASSIGNED, None), (NOT_TREATED, None))
    ),
    "EXTRT": Codelist("Name of Treatment", (("MESENCHYMAL STEM CELLS", None),)),
    "UNIT": Codelist("Unit", (("cells/kg", None), ("IU/mL", None))),
    "FRM": Codelist("Pharmaceutical Dosage Form", (("SUSPENSION", None),)),
    "ROUTE": Codelist("Route of Administration", (("INTRAVENOUS", None),)),
    "LBTESTCD": Codelist("Laboratory Test Code", (("CMVDNA", "Cytomegalovirus DNA"),)),
    "LBTEST": Codelist("Laboratory Test Name", (("Cytomegalovirus DNA", None),)),
    "LBCAT": Codelist("Category for Lab Test", (("VIROLOGY", None),)),
    "NRIND": Codelist("Reference Range Indicator", (("NORMAL", None), ("HIGH", None))),
    "SPECTYPE": Codelist("Specimen Type", (("PLASMA", None), ("WHOLE BLOOD", None))),
    "AESEV": Codelist("Severity/Intensity Scale", (("MILD", None), ("MODERATE", None), ("SEVERE", None))),
    "TOXGR": Codelist("CTCAE Grade", tuple((str(g), f"Grade {g}") for g in range(1, 6))),
    "AEREL": Codelist(
        "Causality (WHO-UMC)",
        tuple(
            (c, None) for c in ("CERTAIN", "PROBABLE", "POSSIBLE", "UNLIKELY", "CONDITIONAL", "UNASSESSABLE")
        ),
    ),
    "OUT": Codelist(
        "Outcome of Event",
        tuple(
            (o, None)
            for o in (
                "RECOVERED/RESOLVED",
                "RECOVERING/RESOLVING",
                "NOT RECOVERED/NOT RESOLVED",
                "RECOVERED/RESOLVED WITH SEQUELAE",
                "FATAL",
            )
        ),
    ),
    "DSCAT": Codelist(
        "Category for Disposition Event", (("PROTOCOL MILESTONE", None), ("DISPOSITION EVENT", None))
    ),
    "DSDECOD": Codelist(
        "Standardized Disposition Term",
        tuple(
            (d, None)
            for d in (
                "INFORMED CONSENT OBTAINED",
                "ENROLLED",
                SCREEN_FAILURE,
                "WITHDRAWAL BY SUBJECT",
                "DEATH",
                "COMPLETED",
            )
        ),
    ),
    "COUNTRY": Codelist("Country", dictionary="ISO 3166-1 alpha-3"),
}


def codelists(arm: str, sites: Iterable[str], dictionary: str | None) -> dict[str, Codelist]:
    """Every codelist of the datasets: the fixed ones, and those of this study and its coding.

    ``arm`` is the planned arm's description, ``sites`` the protocol's site codes,
    ``dictionary`` the coding dictionary and version the coders named (``None``
    while nothing is coded).
    """
    return {
        **CODELISTS,
        "SITEID": Codelist("Study Site Identifier", tuple((site, None) for site in sites)),
        "ARMCD": Codelist("Planned Arm Code", (("MSC", arm),)),
        "ARM": Codelist("Description of Arm", ((arm, None),)),
        "AECAT": Codelist("Category for Adverse Event", tuple((c.upper(), None) for c in CATEGORIES)),
        "MEDDRA": Codelist("Adverse Event Dictionary", dictionary=dictionary or "MedDRA"),
    }
