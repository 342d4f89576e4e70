"""CDISC ODM 1.3.2 export (issue #6): schema-valid, every event a transaction, read back whole."""

from __future__ import annotations

import datetime as dt
import json
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from lxml import etree

from cli import main
from ledger.application import access, signatures
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.entry import Entry
from ledger.domain.errors import Refused
from ledger.domain.events import EventCorrected, EventVoided, Record, apply_changes
from ledger.exchange.odm import NS, export_odm, odm_value, read_odm
from tests import lines as L
from tests.staff import PASSPHRASE, generated, staffed, store

N = f"{{{NS}}}"  # the ODM namespace, for ElementTree paths


@pytest.fixture(scope="module")
def odm_schema() -> etree.XMLSchema:
    """The official ODM 1.3.2 schema as the odmlib package ships it (a dependency: never skipped)."""
    with as_file(files("odmlib") / "schemas" / "odm" / "1.3.2" / "ODM1-3-2.xsd") as path:
        return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> TrialLedger:
    """The demo's simulated 120-participant trial, imported into a SQLite ledger."""
    ledger = TrialLedger(str(tmp_path_factory.mktemp("trial") / "trial.db"))
    assert generated(ledger, 120).stored
    return ledger


def export(ledger: TrialLedger, path: Path, known_at: dt.datetime | None = None) -> list[Entry]:
    entries = list(ledger.entries(known_at=known_at))
    export_odm(entries, ledger.protocol, path, known_at=known_at, created=dt.datetime.now(dt.UTC))
    return entries


def assert_read_back(entries: list[Entry], path: Path) -> None:
    """Every event is in the file, and reads back as the record the ledger stores."""
    read = {record.id: record for record in read_odm(path)}
    assert sorted(read) == sorted(e.record.id for e in entries)  # type: ignore[type-var]
    current: dict[str, Record] = {}
    for entry in entries:
        stored, back = entry.record, read[entry.record.id]
        if isinstance(stored, EventCorrected):
            # Values come back typed (dates, UTC times, floats): compare what they do.
            assert isinstance(back, EventCorrected)
            assert (back.target, back.reason, back.user, back.site) == (
                stored.target,
                stored.reason,
                stored.user,
                stored.site,
            )
            assert apply_changes(current[stored.target], back.changes) == apply_changes(
                current[stored.target], stored.changes
            )
            current[stored.target] = apply_changes(current[stored.target], stored.changes)
        elif isinstance(stored, EventVoided):
            assert back == msgspec.structs.replace(stored, entered_at=None, source_user=None)  # not in ODM
        else:
            assert back == stored
            current[stored.id or ""] = stored


def test_an_export_of_a_generated_trial_validates_against_odm_1_3_2(
    trial: TrialLedger, odm_schema: etree.XMLSchema, tmp_path: Path
) -> None:
    entries = export(trial, tmp_path / "trial.xml")
    document = etree.parse(str(tmp_path / "trial.xml"))
    assert odm_schema.validate(document), odm_schema.error_log.filter_from_errors()
    root = document.getroot()
    assert (root.get("FileType"), root.get("ODMVersion")) == ("Transactional", "1.3.2")
    subjects = root.findall(f"{N}ClinicalData/{N}SubjectData")
    assert len(subjects) == len(entries)
    transactions = {g.get("TransactionType") for g in root.iter(f"{N}ItemGroupData")}
    assert transactions == {"Insert", "Update"}
    removes = root.findall(f".//{N}StudyEventData[@TransactionType='Remove']")
    voids = [e for e in entries if isinstance(e.record, EventVoided)]
    assert voids and len(removes) == len(voids)
    enrolled = {e.participant for e in entries if e.record.type == "ParticipantEnrolled"}
    assert len(enrolled) == 120


def test_the_generated_trial_reads_back_event_for_event(trial: TrialLedger, tmp_path: Path) -> None:
    entries = export(trial, tmp_path / "trial.xml")
    assert {type(e.record) for e in entries} >= {EventCorrected, EventVoided}
    assert_read_back(entries, tmp_path / "trial.xml")


def test_every_audit_record_names_user_location_time_and_source(trial: TrialLedger, tmp_path: Path) -> None:
    entries = export(trial, tmp_path / "trial.xml")
    root = etree.parse(str(tmp_path / "trial.xml")).getroot()
    users = {u.get("OID") for u in root.iter(f"{N}User")}
    locations = {loc.get("OID") for loc in root.iter(f"{N}Location")}
    audits = list(root.iter(f"{N}AuditRecord"))
    assert len(audits) == len(entries)
    for audit in audits:
        assert audit.find(f"{N}UserRef").get("UserOID") in users
        assert audit.find(f"{N}LocationRef").get("LocationOID") in locations
        assert audit.findtext(f"{N}DateTimeStamp").endswith("Z")
    by_id = {e.record.id: e for e in entries}
    for audit in audits:
        entry = by_id[audit.findtext(f"{N}SourceID")]
        assert audit.findtext(f"{N}DateTimeStamp") == odm_value(entry.recorded_at)
        amends = isinstance(entry.record, EventCorrected | EventVoided)
        assert audit.findtext(f"{N}ReasonForChange") == (entry.record.reason if amends else None)


def test_metadata_defines_every_item_with_its_type_and_code_list(trial: TrialLedger, tmp_path: Path) -> None:
    export(trial, tmp_path / "trial.xml")
    root = etree.parse(str(tmp_path / "trial.xml")).getroot()
    items = {i.get("OID"): i for i in root.iter(f"{N}ItemDef")}
    assert items["I.MSCInfused.cells_per_kg"].get("DataType") == "float"
    assert items["I.ParticipantScreened.consent_date"].get("DataType") == "date"
    assert items["I.AdverseEventReported.aware_at"].get("DataType") == "datetime"
    assert items["I.AdverseEventReported.serious"].get("DataType") == "boolean"
    result = items["I.CMVLoadMeasured.result"]
    assert result.find(f"{N}CodeListRef").get("CodeListOID") == "CL.result"
    code_lists = {c.get("OID"): c for c in root.iter(f"{N}CodeList")}
    assert {i.get("CodedValue") for i in code_lists["CL.result"]} == {
        "not_detected",
        "below_lloq",
        "quantified",
        "above_uloq",
    }
    used = {i.get("ItemOID") for i in root.iter(f"{N}ItemData")}
    assert used <= set(items)
    events = {s.get("OID") for s in root.iter(f"{N}StudyEventDef")}
    assert {"SE.MSCInfused", "SE.AdverseEventReported"} <= events


def regulated_ledger(url: str, keys: Path) -> TrialLedger:
    """A small trial with users, a refusal, a signature, a correction, a void, a lock and an unlock."""
    moments = (dt.datetime(2016, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n) for n in range(10_000))
    ledger = TrialLedger(url, clock=lambda: next(moments))
    people = staffed(ledger, keys)
    store(ledger, [*L.treated("NFH-001"), L.adverse_event("NFH-001", id="NFH-001-ae1")])
    store(ledger, [L.screening("NFH-002", refractory_cmv=None, investigator_excluded=True)])
    with pytest.raises(Refused):
        store(ledger, [L.cmv("NFH-001")], user="monitor")
    signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", people["nfh.pi"], PASSPHRASE)
    store(ledger, [L.correction("NFH-001-ae1", {"grade": 3, "aware_at": "2014-01-12T10:00:00+08:00"})])
    store(ledger, [L.correction("NFH-001-inf1", {"lot": "LOT-9"})])
    store(ledger, [L.void("NFH-001-enr")])
    access.lock(ledger, "dm", "interim analysis")
    access.unlock(ledger, "dm", "analysis done")
    return ledger


def test_users_signatures_lock_and_refusals_round_trip(
    store_url: str, tmp_path: Path, odm_schema: etree.XMLSchema
) -> None:
    ledger = regulated_ledger(store_url, tmp_path)
    entries = export(ledger, tmp_path / "small.xml")
    assert odm_schema.validate(etree.parse(str(tmp_path / "small.xml"))), odm_schema.error_log
    assert {e.record.type for e in entries} >= {
        "UserRegistered",
        "ActionRefused",
        "RecordSigned",
        "DatabaseLocked",
        "DatabaseUnlocked",
    }
    assert_read_back(entries, tmp_path / "small.xml")
    root = etree.parse(str(tmp_path / "small.xml")).getroot()
    [signature] = root.iter(f"{N}Signature")
    assert signature.find(f"{N}SignatureRef").get("SignatureOID") == "SIG.approved"
    pi = root.find(f"{N}AdminData/{N}User[@OID='USR.nfh.pi']")
    assert pi.findtext(f"{N}FullName") == "Nfh Pi" and pi.findtext(f"{N}Certificate").startswith("ed25519:")
    # The refused screening of NFH-002 has a null refractory_cmv: an explicit IsNull item.
    refractory = f".//{N}ItemData[@ItemOID='I.ParticipantScreened.refractory_cmv'][@IsNull='Yes']"
    assert root.find(refractory) is not None


def test_known_at_exports_the_ledger_as_it_stood_and_says_whether_it_was_locked(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = regulated_ledger(sqlite_url, tmp_path)
    entries = list(ledger.entries())
    locked_at = next(e.recorded_at for e in entries if e.record.type == "DatabaseLocked")
    then = export(ledger, tmp_path / "then.xml", known_at=locked_at)
    assert [e.record.type for e in then][-1] == "DatabaseLocked"
    assert_read_back(then, tmp_path / "then.xml")
    root = etree.parse(str(tmp_path / "then.xml")).getroot()
    assert root.get("AsOfDateTime") == odm_value(locked_at)
    assert "data locked since" in root.get("Description")
    assert "by dm (interim analysis)" in root.get("Description")
    first_correction = next(e.recorded_at for e in entries if isinstance(e.record, EventCorrected))
    before = first_correction - dt.timedelta(seconds=1)
    early = export(ledger, tmp_path / "early.xml", known_at=before)
    root = etree.parse(str(tmp_path / "early.xml")).getroot()
    assert not root.findall(f".//{N}ItemGroupData[@TransactionType='Update']")
    assert "data not locked" in root.get("Description")
    assert_read_back(early, tmp_path / "early.xml")


def test_command_line_export_odm(sqlite_url: str, tmp_path: Path) -> None:
    store(TrialLedger(sqlite_url), L.treated("NFH-001"), user="nfh.nurse")
    command = ["--store", sqlite_url, "--json", "export", "odm", str(tmp_path / "x.xml")]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["events"] == 3 and summary["subjects"] == 1
    assert summary["lock"] == {"locked": False, "since": None, "by": None, "reason": None}
    assert [r.id for r in read_odm(tmp_path / "x.xml")] == ["NFH-001-scr", "NFH-001-enr", "NFH-001-inf1"]
