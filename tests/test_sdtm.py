"""SDTM datasets (issues #6, 15): SDTMIG 3.4 content, transport files equal to the CSV, define.xml valid."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from click.testing import CliRunner
from lxml import etree

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
from ledger.exchange.define import DEF, ODM, define_schema
from ledger.exchange.sdtm import export_sdtm, sdtm_day
from ledger.exchange.sdtmig import SPECS
from tests import lines as L
from tests.staff import generated, store

EXPECTED = {
    "DM": ["USUBJID", "SUBJID", "RFSTDTC", "SITEID", "AGE", "SEX", "ARMCD", "ACTARMCD", "DTHFL"],
    "EX": ["USUBJID", "EXSEQ", "EXTRT", "EXDOSE", "EXDOSU", "EXSTDTC", "EXSTDY"],
    "LB": ["USUBJID", "LBSEQ", "LBTESTCD", "LBORRES", "LBSTRESN", "LBSPEC", "LBDTC", "LBDY"],
    "AE": ["USUBJID", "AESEQ", "AETERM", "AESER", "AESEV", "AETOXGR", "AEREL", "AESTDTC", "AESTDY"],
    "DS": ["USUBJID", "DSSEQ", "DSTERM", "DSDECOD", "DSCAT", "DSSTDTC", "DSSTDY"],
}


def export(ledger: TrialLedger, out: Path, as_of: dt.date, known_at: dt.datetime | None = None) -> dict:
    entries = ledger.entries(known_at=known_at)
    created = dt.datetime.now(dt.UTC)
    return export_sdtm(
        entries, ledger.protocol, out, as_of=as_of, known_at=known_at, created=created, format="both"
    )


def read(out: Path, domain: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{domain.lower()}.csv", dtype={"AGE": "Int64"})


def read_typed(path: Path, dataset: str) -> pd.DataFrame:
    """A CSV dataset as its metadata types it: text (empty for null) and floats (NaN for null)."""
    spec = SPECS[dataset]
    text = {v.name: str for v in spec.variables if v.type == "Char"}
    frame = pd.read_csv(
        path, dtype=text, keep_default_na=False, na_values={v: [""] for v in spec.columns if v not in text}
    )
    return frame.astype({v.name: "float64" for v in spec.variables if v.type == "Num"})


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SDTM datasets of the demo's simulated 120-participant trial at the end of follow-up."""
    ledger = TrialLedger(str(tmp_path_factory.mktemp("trial") / "trial.db"))
    generated(ledger, 120)
    out = tmp_path_factory.mktemp("sdtm")
    export(ledger, out, dt.date(2016, 12, 31))
    return out


def test_the_datasets_load_in_pandas_with_the_expected_columns(datasets: Path) -> None:
    summary = json.loads((datasets / "export.json").read_text())
    assert list(summary["datasets"]) == ["DM", "EX", "LB", "AE", "DS", "SUPPDM", "SUPPAE"]
    for domain in EXPECTED:
        frame = read(datasets, domain)
        assert list(frame.columns) == SPECS[domain].columns
        assert set(EXPECTED[domain]) <= set(frame.columns)
        assert (frame["DOMAIN"] == domain).all() and (frame["STUDYID"] == "NFH-MSC-CMV-2014").all()
    define = pd.read_csv(datasets / "define.csv")
    assert list(define.columns) == ["DATASET", "VARIABLE", "LABEL", "TYPE", "CORE", "ORIGIN", "COMMENT"]
    assert len(define) == sum(len(SPECS[name].variables) for name in summary["datasets"])
    assert set(define["TYPE"]) == {"Char", "Num"} and define["LABEL"].notna().all()
    assert set(define["CORE"]) == {"Req", "Exp", "Perm"}
    assert summary["lock"]["locked"] is False and summary["as_of"] == "2016-12-31"
    assert summary["sdtmig"] == "3.4" and summary["define"]["valid"] is True


def test_demographics_hold_every_screened_participant(datasets: Path) -> None:
    dm = read(datasets, "DM")
    assert dm["USUBJID"].is_unique
    assert (dm["ARMCD"] == "MSC").sum() == 120
    # SDTMIG 3.3+: screen failures, and participants screened but neither failed nor enrolled, have
    # no arm, and ARMNRS says why.
    no_arm = dm[dm["ARMCD"].isna()]
    assert len(no_arm) == len(dm) - 120 > 0
    assert set(no_arm["ARMNRS"]) == {"SCREEN FAILURE", "NOT ASSIGNED"}
    assert no_arm[["ARM", "ACTARMCD", "ACTARM", "RFSTDTC", "RFENDTC"]].isna().all().all()
    assigned = dm[dm["ARMCD"] == "MSC"]
    assert set(assigned["ARMNRS"].dropna()) <= {"ASSIGNED, NOT TREATED"}
    assert (assigned["ARMNRS"].isna() == assigned["ACTARMCD"].notna()).all()
    failed = no_arm[no_arm["ARMNRS"] == "SCREEN FAILURE"]
    assert (failed["RFPENDTC"] == failed["DMDTC"]).all()
    treated = dm[dm["ACTARMCD"] == "MSC"]
    assert treated["RFSTDTC"].notna().all() and (treated["RFSTDTC"] == treated["RFXSTDTC"]).all()
    assert set(dm["SEX"]) <= {"M", "F", "U"} and dm["AGE"].between(0, 130).all()
    died = dm[dm["DTHFL"] == "Y"]
    assert died["DTHDTC"].notna().all()


def test_study_days_count_from_the_first_infusion_with_no_day_0(datasets: Path) -> None:
    assert [sdtm_day(dt.date(2015, 3, 10), dt.date(2015, 3, d)) for d in (8, 9, 10, 11)] == [-2, -1, 1, 2]
    ex = read(datasets, "EX")
    assert (ex.loc[ex["VISITNUM"] == 1, "EXSTDY"] == 1).all()
    for domain, column in (("LB", "LBDY"), ("AE", "AESTDY"), ("DS", "DSSTDY"), ("EX", "EXSTDY")):
        assert not (read(datasets, domain)[column] == 0).any()
    lb = read(datasets, "LB").merge(read(datasets, "DM")[["USUBJID", "RFSTDTC"]], on="USUBJID")
    lb = lb[lb["RFSTDTC"].notna()]
    days = (pd.to_datetime(lb["LBDTC"]) - pd.to_datetime(lb["RFSTDTC"])).dt.days
    assert (lb["LBDY"] == days.where(days < 0, days + 1)).all()


def test_adverse_events_carry_seriousness_severity_grade_and_causality(datasets: Path) -> None:
    ae = read(datasets, "AE")
    assert set(ae["AESER"]) == {"Y", "N"}
    assert ae["AETOXGR"].between(1, 5).all()
    expected = ae["AETOXGR"].map({1: "MILD", 2: "MODERATE"}).fillna("SEVERE")
    assert (ae["AESEV"] == expected).all()
    assert set(ae["AEREL"]) <= {"CERTAIN", "PROBABLE", "POSSIBLE", "UNLIKELY", "CONDITIONAL", "UNASSESSABLE"}
    assert (ae.loc[ae["AETOXGR"] == 5, "AESDTH"] == "Y").all()
    serious = ae[ae["AESER"] == "Y"]
    flags = serious[["AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE"]]
    assert (flags == "Y").any(axis=1).all()


def test_cmv_results_and_dispositions(datasets: Path) -> None:
    lb = read(datasets, "LB")
    assert set(lb["LBTESTCD"]) == {"CMVDNA"}
    quantified = lb[lb["LBSTRESN"].notna()]
    assert (quantified["LBORRES"].astype(float) == quantified["LBSTRESN"]).all()
    assert set(lb.loc[lb["LBSTRESN"].isna(), "LBORRES"].str[:1]) <= {"N", "<", ">"}
    ds = read(datasets, "DS")
    assert {"INFORMED CONSENT OBTAINED", "ENROLLED", "SCREEN FAILURE", "COMPLETED"} <= set(ds["DSDECOD"])
    assert ds.groupby("USUBJID")["DSSEQ"].apply(lambda seq: list(seq) == list(range(1, len(seq) + 1))).all()


def test_values_as_of_a_date_and_as_known_at_a_moment(tmp_path: Path) -> None:
    moments = (dt.datetime(2014, 2, 1, tzinfo=dt.UTC) + dt.timedelta(days=n) for n in range(100))
    ledger = TrialLedger(str(tmp_path / "t.db"), clock=lambda: next(moments))
    store(ledger, [*L.treated("NFH-001"), L.adverse_event("NFH-001", id="ae1")])
    store(ledger, [L.ae_update("NFH-001", grade=3, effective="2014-01-15", outcome=None, resolved_date=None)])
    store(ledger, [L.correction("ae1", {"term": "Fever, high"})])
    access.lock(ledger, "dm", "interim analysis")

    def ae(out: str, as_of: dt.date, known_at: dt.datetime | None = None) -> pd.Series:
        summary = export(ledger, tmp_path / out, as_of, known_at)
        return pd.Series(
            {**read(tmp_path / out, "AE").iloc[0].to_dict(), "locked": summary["lock"]["locked"]}
        )

    now = ae("now", dt.date(2014, 1, 20))
    assert (now["AETERM"], now["AETOXGR"], now["AESEV"], now["AESTDY"], now["locked"]) == (
        "Fever, high",
        3,
        "SEVERE",
        4,
        True,
    )
    before_update = ae("before", dt.date(2014, 1, 14))
    assert (before_update["AETOXGR"], before_update["AESEV"]) == (2, "MODERATE")
    known_before_correction = ae("known", dt.date(2014, 1, 20), dt.datetime(2014, 2, 2, 12, tzinfo=dt.UTC))
    assert (known_before_correction["AETERM"], known_before_correction["locked"]) == ("Fever", False)


def test_command_line_export_sdtm(tmp_path: Path) -> None:
    url = str(tmp_path / "t.db")
    store(TrialLedger(url), L.treated("NFH-001"), user="nfh.nurse")
    out = tmp_path / "sdtm"
    command = ["--store", url, "--json", "export", "sdtm", str(out), "--as-of", "2014-02-01"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["datasets"] == {"DM": 1, "EX": 1, "LB": 0, "AE": 0, "DS": 2, "SUPPDM": 2}
    assert json.loads((out / "export.json").read_text()) == summary
    ex, _ = pyreadstat.read_xport(out / "ex.xpt")
    assert ex["EXDOSE"].tolist() == [1000000.0]
    assert not list(out.glob("*.csv"))


def test_every_transport_file_reads_back_as_its_csv(datasets: Path) -> None:
    """Each ``.xpt`` read with pyreadstat is the CSV: same columns, values, name, labels."""
    summary = json.loads((datasets / "export.json").read_text())
    for name in summary["datasets"]:
        spec = SPECS[name]
        frame, meta = pyreadstat.read_xport(datasets / f"{name.lower()}.xpt")
        assert (meta.table_name, meta.file_label, meta.number_rows) == (
            name,
            spec.label,
            summary["datasets"][name],
        )
        assert meta.column_names_to_labels == {v.name: v.label for v in spec.variables}
        assert meta.readstat_variable_types == {
            v.name: "double" if v.type == "Num" else "string" for v in spec.variables
        }
        csv = read_typed(datasets / f"{name.lower()}.csv", name)
        pd.testing.assert_frame_equal(frame.astype(csv.dtypes.to_dict()), csv, check_exact=True)


def test_transport_files_keep_the_fda_limits(datasets: Path) -> None:
    """SAS XPORT version 5; names of 8, labels of 40, character values of 200 bytes, ASCII."""
    for path in sorted(datasets.glob("*.xpt")):
        head = path.read_bytes()[:80]
        assert head.startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!"), path.name  # v8: LIBV8
        frame, meta = pyreadstat.read_xport(path)
        assert len(meta.table_name) <= 8 and len(meta.file_label) <= 40
        assert all(len(c) <= 8 for c in frame.columns)
        assert all(len(label) <= 40 for label in meta.column_names_to_labels.values())
        assert all(width <= 200 for width in meta.variable_storage_width.values())
        text = frame.select_dtypes(exclude="number")
        assert text.map(lambda v: v.isascii() and len(v.encode()) <= 200).all().all(), path.name


def test_define_xml_is_valid_against_the_define_xml_21_schema(datasets: Path) -> None:
    """define.xml passes the official XSD and describes every dataset, variable, codelist, method."""
    tree = etree.parse(str(datasets / "define.xml"))
    schema = define_schema()
    assert schema.validate(tree), schema.error_log
    n = {"odm": ODM, "def": DEF}
    summary = json.loads((datasets / "export.json").read_text())
    assert tree.xpath("//def:Standard/@Name", namespaces=n) == ["SDTMIG"]
    assert tree.xpath("//def:Standard/@Version", namespaces=n) == ["3.4"]
    groups = tree.xpath("//odm:ItemGroupDef", namespaces=n)
    assert [g.get("Name") for g in groups] == list(summary["datasets"])
    oids = set(tree.xpath("//@OID", namespaces=n))
    for group in groups:
        spec = SPECS[group.get("Name")]
        refs = group.xpath("odm:ItemRef", namespaces=n)
        assert [r.get("ItemOID") for r in refs] == [f"IT.{spec.name}.{v}" for v in spec.columns]
        assert [r.get("Mandatory") == "Yes" for r in refs] == [v.core == "Req" for v in spec.variables]
        assert group.xpath(
            "def:leaf/@xlink:href", namespaces={**n, "xlink": "http://www.w3.org/1999/xlink"}
        ) == [f"{spec.name.lower()}.xpt"]
        assert {r.get("MethodOID") for r in refs if r.get("MethodOID")} <= oids
    items = tree.xpath("//odm:ItemDef", namespaces=n)
    assert all(item.xpath("def:Origin/@Type", namespaces=n) for item in items)
    for attribute in ("CodeListOID", "def:CommentOID", "ValueListOID", "WhereClauseOID"):
        assert set(tree.xpath(f"//@{attribute}", namespaces=n)) <= oids, attribute
    assert tree.xpath("//odm:CodeList[@OID='CL.SEX']/odm:CodeListItem/@CodedValue", namespaces=n) == [
        "M",
        "F",
        "U",
    ]
    derived = tree.xpath("//odm:ItemRef[@ItemOID='IT.DM.RFPENDTC']/@MethodOID", namespaces=n)
    assert derived == ["MT.DM.RFPENDTC"]


def test_the_define_xml_schema_catches_a_broken_document(datasets: Path) -> None:
    """The schema check is real: without def:Context or with an unknown origin type it fails."""
    schema = define_schema()
    tree = etree.parse(str(datasets / "define.xml"))
    del tree.getroot().attrib[f"{{{DEF}}}Context"]
    assert not schema.validate(tree)
    tree = etree.parse(str(datasets / "define.xml"))
    tree.find(f".//{{{DEF}}}Origin").set("Type", "CRF")
    assert not schema.validate(tree)


def test_laboratory_reference_ranges_and_the_baseline_flag(datasets: Path) -> None:
    lb = read(datasets, "LB").merge(read(datasets, "DM")[["USUBJID", "RFSTDTC"]], on="USUBJID")
    assert (lb["LBSTNRHI"] == lb["LBLLOQ"]).all() and lb["LBORNRLO"].isna().all()
    assert (lb["LBORNRHI"].astype(float) == lb["LBLLOQ"]).all()
    positive = lb["LBSTRESN"].notna() | (lb["LBORRES"] == ">ULOQ")
    assert (lb.loc[positive, "LBNRIND"] == "HIGH").all() and (lb.loc[~positive, "LBNRIND"] == "NORMAL").all()
    before = lb[lb["RFSTDTC"].notna() & (lb["LBDTC"] < lb["RFSTDTC"])]
    baseline = before.sort_values(["LBDTC", "LBSEQ"]).groupby("USUBJID").tail(1)
    flagged = lb[lb["LBLOBXFL"] == "Y"]
    assert len(flagged) > 100
    assert sorted(flagged["LBSPID"]) == sorted(baseline["LBSPID"])


def test_a_participant_never_treated_has_no_reference_end_and_says_why(tmp_path: Path) -> None:
    """CG0141: enrolled, withdrawn before the first infusion: RFENDTC null, RFPENDTC the withdrawal."""
    ledger = TrialLedger(str(tmp_path / "t.db"))
    store(
        ledger,
        [L.screening("NFH-001"), L.enrollment("NFH-001"), L.withdrawal("NFH-001", effective="2014-01-10")],
    )
    store(ledger, [L.screening("NFH-002", hr=150)])
    export(ledger, tmp_path / "out", dt.date(2014, 2, 1))
    dm = read(tmp_path / "out", "DM").set_index("SUBJID")
    withdrawn, failed = dm.loc["NFH-001"], dm.loc["NFH-002"]
    assert (withdrawn["ARMCD"], withdrawn["ARMNRS"], withdrawn["RFPENDTC"]) == (
        "MSC",
        "ASSIGNED, NOT TREATED",
        "2014-01-10",
    )
    assert withdrawn[["ACTARMCD", "ACTARM", "RFSTDTC", "RFENDTC"]].isna().all()
    assert (failed["ARMNRS"], failed["RFPENDTC"]) == ("SCREEN FAILURE", "2014-01-06")
    assert failed[["ARMCD", "ARM", "ACTARMCD", "ACTARM", "RFENDTC"]].isna().all()


def test_long_and_non_ascii_text_goes_to_supplemental_qualifiers(tmp_path: Path) -> None:
    """A 450-character accented term: ASCII, first 200 in AETERM, the rest in SUPPAE AETERM1, AETERM2."""
    ledger = TrialLedger(str(tmp_path / "t.db"))
    term = "Fièvre " + "x" * 443
    store(ledger, [*L.treated("NFH-001"), L.adverse_event("NFH-001", id="ae1", term=term)])
    summary = export(ledger, tmp_path / "out", dt.date(2014, 2, 1))
    plain = "Fievre " + "x" * 443
    ae = read_typed(tmp_path / "out" / "ae.csv", "AE")
    assert ae["AETERM"].tolist() == [plain[:200]]
    supp = read_typed(tmp_path / "out" / "suppae.csv", "SUPPAE")
    pieces = supp[supp["QNAM"].str.startswith("AETERM")]
    assert pieces[["QNAM", "QVAL", "IDVAR", "IDVARVAL"]].values.tolist() == [
        ["AETERM1", plain[200:400], "AESEQ", "1"],
        ["AETERM2", plain[400:], "AESEQ", "1"],
    ]
    assert summary["altered_for_transport"] == [
        {"dataset": "AE", "usubjid": "NFH-MSC-CMV-2014-NFH-001", "variable": "AETERM", "value": plain}
    ]
    assert summary["conformance"]["rules"][-1] == {
        "id": "TCG",
        "description": "Names of 8, labels of 40, ASCII text of 200 bytes (FDA TCG)",
        "severity": "error",
        "findings": 0,
    }
