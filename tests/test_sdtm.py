"""SDTM datasets (issue #6): load in pandas with the expected columns, values as of a date."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
from ledger.exchange.sdtm import DATASETS, export_sdtm, sdtm_day
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
    return export_sdtm(entries, ledger.protocol, out, as_of=as_of, known_at=known_at, created=created)


def read(out: Path, domain: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{domain.lower()}.csv", dtype={"AGE": "Int64"})


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SDTM datasets of the demo's simulated 120-participant trial at the end of follow-up."""
    ledger = TrialLedger(str(tmp_path_factory.mktemp("trial") / "trial.db"))
    generated(ledger, 120)
    out = tmp_path_factory.mktemp("sdtm")
    export(ledger, out, dt.date(2016, 12, 31))
    return out


def test_the_datasets_load_in_pandas_with_the_expected_columns(datasets: Path) -> None:
    for domain, variables in DATASETS.items():
        frame = read(datasets, domain)
        assert list(frame.columns) == [v.name for v in variables]
        assert set(EXPECTED[domain]) <= set(frame.columns)
        assert (frame["DOMAIN"] == domain).all() and (frame["STUDYID"] == "NFH-MSC-CMV-2014").all()
    define = pd.read_csv(datasets / "define.csv")
    assert list(define.columns) == ["DATASET", "VARIABLE", "LABEL", "TYPE", "ORIGIN", "COMMENT"]
    assert len(define) == sum(len(v) for v in DATASETS.values())
    assert set(define["TYPE"]) == {"Char", "Num"} and define["LABEL"].notna().all()
    summary = json.loads((datasets / "export.json").read_text())
    assert summary["lock"]["locked"] is False and summary["as_of"] == "2016-12-31"


def test_demographics_hold_every_screened_participant(datasets: Path) -> None:
    dm = read(datasets, "DM")
    assert dm["USUBJID"].is_unique
    assert (dm["ARMCD"] == "MSC").sum() == 120
    # Screen failures, and participants screened but neither failed nor enrolled.
    assert set(dm["ARMCD"]) == {"MSC", "SCRNFAIL", "NOTASSGN"}
    assert (dm.loc[dm["ARMCD"] != "MSC", "ACTARMCD"] == dm.loc[dm["ARMCD"] != "MSC", "ARMCD"]).all()
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
    assert summary["datasets"] == {"DM": 1, "EX": 1, "LB": 0, "AE": 0, "DS": 2}
    assert json.loads((out / "export.json").read_text()) == summary
    assert read(out, "EX")["EXDOSE"].tolist() == [1000000]
