"""Adverse-event coding as events (issue 15): code-ae, recoding with its audit trail, coding, SDTM."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from importlib.resources import as_file, files
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree

from ledger.application import audit
from ledger.application.coding import Coding, code_adverse_events, uncoded
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import ActionRefused
from ledger.exchange.odm import export_odm, read_odm
from ledger.exchange.sdtm import export_sdtm
from ledger.simulation import demo
from ledger.simulation.coding import DICTIONARY, code_demo
from tests import lines as L
from tests.staff import add_user, generated, staffed, store

FEVER = Coding(
    "NFH-001",
    "AE-1",
    "Test Dictionary 2.0",
    11000001,
    "Feverish",
    11000002,
    "Fever",
    11000003,
    "Fevers",
    11000004,
    "Body temperature",
    11000005,
    "General conditions",
)


def ledger_with_an_ae(url: str) -> TrialLedger:
    moments = (dt.datetime(2014, 2, 1, tzinfo=dt.UTC) + dt.timedelta(hours=n) for n in range(1000))
    ledger = TrialLedger(url, clock=lambda: next(moments))
    store(ledger, [*L.treated("NFH-001"), L.adverse_event("NFH-001", id="ae1")])
    return ledger


def test_a_coder_codes_recodes_and_the_audit_shows_old_and_new_codes(store_url: str, tmp_path: Path) -> None:
    ledger = ledger_with_an_ae(store_url)
    staffed(ledger, tmp_path)
    add_user(ledger, tmp_path, "coder.li", "coder")
    [first] = [c.record for c in code_adverse_events(ledger, "coder.li", [FEVER])]
    assert (first.participant, first.ae_id, first.verbatim, first.pt, first.user) == (
        "NFH-001",
        "AE-1",
        "Fever",
        "Fever",
        "coder.li",
    )
    recoded = dataclasses.replace(FEVER, pt_code=11000012, pt="Pyrexia")
    [coded] = code_adverse_events(ledger, "dm", [recoded])
    second = coded.record
    assert coded.replaced == first  # data managers may code too
    rows = [r for r in audit.trail(ledger.entries()) if r.kind == "coding"]
    assert [(r.event_id, r.user) for r in rows] == [(first.id, "coder.li"), (second.id, "dm")]
    assert [(c.field, c.old, c.new) for c in rows[1].changes] == [
        ("pt_code", 11000002, 11000012),
        ("pt", "Fever", "Pyrexia"),
    ]
    assert [(c.field, c.old) for c in rows[0].changes][:2] == [("dictionary", None), ("llt_code", None)]
    assert rows[1].values["pt"] == "Pyrexia" and rows[1].participant == "NFH-001"


def test_only_coders_and_data_managers_code_and_coders_enter_no_clinical_data(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = ledger_with_an_ae(sqlite_url)
    staffed(ledger, tmp_path)
    add_user(ledger, tmp_path, "coder.li", "coder")
    with pytest.raises(Refused) as refused:
        code_adverse_events(ledger, "nfh.pi", [FEVER])
    assert str(refused.value) == "nfh.pi (investigator) may not code adverse events"
    last = list(ledger.entries())[-1].record
    assert isinstance(last, ActionRefused) and (last.action, last.user) == ("code", "nfh.pi")
    with pytest.raises(Refused, match=r"^line 1: coder\.li \(coder\) may not append clinical data$"):
        store(ledger, [L.ae_update("NFH-001", grade=3, effective="2014-01-15")], user="coder.li")
    assert not [e for e in ledger.entries() if e.record.type == "AdverseEventCoded"]


def test_a_coding_names_a_reported_ae_and_a_recoding_changes_something(sqlite_url: str) -> None:
    ledger = ledger_with_an_ae(sqlite_url)
    with pytest.raises(InvalidInput) as unknown:
        code_adverse_events(ledger, "coder.li", [dataclasses.replace(FEVER, ae_id="AE-9")])
    assert str(unknown.value) == (
        "NFH-001: ae_id: no adverse event AE-9 is reported (and not voided) (rule coding_of_a_reported_ae)"
    )
    with pytest.raises(InvalidInput) as nobody:
        code_adverse_events(ledger, "coder.li", [dataclasses.replace(FEVER, participant="NFH-777")])
    assert str(nobody.value) == "participant: NFH-777 is not in the ledger"
    with pytest.raises(InvalidInput) as bad_code:
        code_adverse_events(ledger, "coder.li", [dataclasses.replace(FEVER, soc_code=0)])
    assert str(bad_code.value).startswith("soc_code: ")
    code_adverse_events(ledger, "coder.li", [FEVER])
    with pytest.raises(InvalidInput) as same:
        code_adverse_events(ledger, "coder.li", [FEVER])
    assert str(same.value) == (
        "NFH-001: ae_id: AE-1 is already coded with these terms and codes (rule recoding_changes_something)"
    )
    store(ledger, [L.void("ae1", reason="entered in error")])
    with pytest.raises(InvalidInput, match="no adverse event AE-1 is reported"):
        code_adverse_events(ledger, "coder.li", [dataclasses.replace(FEVER, pt="Pyrexia")])


def test_coding_lists_uncoded_terms_and_terms_corrected_since_coding(sqlite_url: str) -> None:
    ledger = ledger_with_an_ae(sqlite_url)
    store(ledger, [L.adverse_event("NFH-001", id="ae2", ae_id="AE-2", term="Nausea", effective="2014-01-13")])
    assert [t.to_json() for t in uncoded(ledger.entries())] == [
        {
            "participant": "NFH-001",
            "ae_id": "AE-1",
            "term": "Fever",
            "onset": "2014-01-12",
            "reason": "not coded",
        },
        {
            "participant": "NFH-001",
            "ae_id": "AE-2",
            "term": "Nausea",
            "onset": "2014-01-13",
            "reason": "not coded",
        },
    ]
    code_adverse_events(ledger, "coder.li", [FEVER])
    assert [t.ae_id for t in uncoded(ledger.entries())] == ["AE-2"]
    store(ledger, [L.correction("ae1", {"term": "Fever, high"})])
    assert [(t.ae_id, t.term, t.reason) for t in uncoded(ledger.entries())] == [
        ("AE-1", "Fever, high", "term corrected since coding"),
        ("AE-2", "Nausea", "not coded"),
    ]


def test_sdtm_takes_the_latest_coding_as_known_at_and_lists_an_uncoded_ae(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = ledger_with_an_ae(sqlite_url)
    [first] = [c.record for c in code_adverse_events(ledger, "coder.li", [FEVER])]
    code_adverse_events(ledger, "coder.li", [dataclasses.replace(FEVER, pt_code=11000012, pt="Pyrexia")])
    store(ledger, [L.adverse_event("NFH-001", id="ae2", ae_id="AE-2", term="Nausea", effective="2014-01-13")])

    def ae(out: str, known_at: dt.datetime | None = None) -> tuple[list[dict], dict]:
        summary = export_sdtm(
            ledger.entries(known_at=known_at),
            ledger.protocol,
            tmp_path / out,
            as_of=dt.date(2014, 2, 1),
            known_at=known_at,
            created=dt.datetime(2014, 3, 1, tzinfo=dt.UTC),
            format="csv",
        )
        frame = pd.read_csv(tmp_path / out / "ae.csv", keep_default_na=False, dtype=str)
        return frame.to_dict("records"), summary

    rows, summary = ae("now")
    assert [
        (r["AESPID"], r["AEDECOD"], r["AEPTCD"], r["AELLT"], r["AEBODSYS"], r["AESOCCD"]) for r in rows
    ] == [
        ("AE-1", "Pyrexia", "11000012", "Feverish", "General conditions", "11000005"),
        ("AE-2", "", "", "", "", ""),
    ]
    assert summary["dictionaries"] == ["Test Dictionary 2.0"]
    found = [f for f in summary["conformance"]["findings"] if f["rule"] == "CG0014"]
    assert found == [
        {
            "rule": "CG0014",
            "dataset": "AE",
            "variable": "AEDECOD",
            "usubjid": "NFH-MSC-CMV-2014-NFH-001",
            "record": 2,
            "message": "Required variable AEDECOD is null",
        },
    ]
    [first_entry] = [e for e in ledger.entries() if e.record.id == first.id]
    rows, _ = ae("then", known_at=first_entry.recorded_at)
    assert [(r["AESPID"], r["AEDECOD"]) for r in rows] == [("AE-1", "Fever")]


def test_the_fictitious_dictionary_is_visibly_invented_and_covers_every_demo_term() -> None:
    data = tomllib.loads(DICTIONARY.read_text(encoding="utf-8"))
    assert data["dictionary"].startswith("Fictional")
    assert DICTIONARY.read_text(encoding="utf-8").startswith("# A FICTITIOUS coding dictionary")
    for levels in data["terms"].values():
        assert set(levels) == {"llt", "pt", "hlt", "hlgt", "soc"}
        for code, name in levels.values():
            assert str(code).startswith("99") and len(str(code)) == 8 and name.startswith("Fictional ")
    reported = {term for terms in demo._AE_TERMS.values() for term in terms}
    reported |= {term for _, term in demo._FATAL_NONRESPONDER + demo._FATAL_RESPONDER} | {"Headache"}
    assert reported == set(data["terms"])


def test_the_coded_demo_trial_exports_with_no_required_variable_finding(tmp_path: Path) -> None:
    ledger = TrialLedger(str(tmp_path / "trial.db"))
    generated(ledger, 120)
    coded = code_demo(ledger)
    assert len(coded) > 100 and {c.record.user for c in coded} == {"central.coder"}
    assert code_demo(ledger) == [] and uncoded(ledger.entries()) == []
    summary = export_sdtm(
        ledger.entries(),
        ledger.protocol,
        tmp_path / "sdtm",
        as_of=dt.date(2016, 12, 31),
        known_at=None,
        created=dt.datetime.now(dt.UTC),
    )
    report = summary["conformance"]
    assert report["errors"] == 0 and report["findings"] == []
    assert summary["dictionaries"] == ["Fictional Demo Dictionary 1.0"]
    assert summary["define"]["valid"] is True
    define = (tmp_path / "sdtm" / "define.xml").read_text()
    assert '<ExternalCodeList Dictionary="Fictional Demo Dictionary" Version="1.0"/>' in define


def test_a_coding_travels_in_the_odm_export_and_reads_back(sqlite_url: str, tmp_path: Path) -> None:
    ledger = ledger_with_an_ae(sqlite_url)
    [coded] = code_adverse_events(ledger, "coder.li", [FEVER])
    path = tmp_path / "odm.xml"
    export_odm(list(ledger.entries()), ledger.protocol, path, known_at=None, created=dt.datetime.now(dt.UTC))
    with as_file(files("odmlib") / "schemas" / "odm" / "1.3.2" / "ODM1-3-2.xsd") as xsd:
        schema = etree.XMLSchema(etree.parse(str(xsd)))
    assert schema.validate(etree.parse(str(path))), schema.error_log
    assert [r for r in read_odm(path) if r.type == "AdverseEventCoded"] == [coded.record]
