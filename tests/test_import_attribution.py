"""Who entered an imported line: the login that ran the import (issue 12, item 5).

A line's own ``user`` is the source system's attribution: kept as ``source_user``,
it grants nothing; access control judges the login, and a refusal names the line
and the login.  On SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from ledger.application.importer import import_lines
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import ActionRefused, ClinicalRecord
from tests import lines as L
from tests.staff import staffed


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    return TrialLedger(store_url)


def imported(ledger: TrialLedger, dicts: list[dict[str, object]], login: str) -> list[str]:
    return import_lines(ledger, io.BytesIO(L.jsonl(dicts).encode()), user=login).stored


def clinical(ledger: TrialLedger) -> list[ClinicalRecord]:
    return [e.record for e in ledger.entries() if isinstance(e.record, ClinicalRecord)]


def refusals(ledger: TrialLedger) -> list[ActionRefused]:
    return [e.record for e in ledger.entries() if isinstance(e.record, ActionRefused)]


def test_the_login_enters_every_line_and_the_lines_user_is_kept_as_its_source(ledger: TrialLedger) -> None:
    dicts = [{**line, "user": "legacy.crc"} for line in L.treated("NFH-001")]
    dicts[1]["user"] = "nfh.importer"  # the source names the login itself: nothing more to keep
    del dicts[2]["user"]  # and a line without attribution
    assert len(imported(ledger, dicts, "nfh.importer")) == 3
    stored = clinical(ledger)
    assert [r.user for r in stored] == ["nfh.importer"] * 3
    assert [r.source_user for r in stored] == ["legacy.crc", None, None]


def test_a_lines_user_grants_nothing(ledger: TrialLedger, tmp_path: Path) -> None:
    staffed(ledger, tmp_path)
    # A site nurse cannot borrow the data manager's name for another site's participant...
    with pytest.raises(Refused, match=r"line 1: nfh.nurse \(site_staff of NFH\) may not act for site AMMS"):
        imported(ledger, [{**line, "user": "dm"} for line in L.treated("AMMS-001")], "nfh.nurse")
    # ...nor a monitor a nurse's; while any name from the source is fine for a login that may append.
    with pytest.raises(Refused, match=r"monitor \(monitor\) may not append clinical data"):
        imported(ledger, [{**line, "user": "nfh.nurse"} for line in L.treated("NFH-001")], "monitor")
    assert clinical(ledger) == []
    assert imported(ledger, [{**line, "user": "monitor"} for line in L.treated("NFH-001")], "nfh.nurse")
    assert {(r.user, r.source_user) for r in clinical(ledger)} == {("nfh.nurse", "monitor")}
    assert [r.user for r in refusals(ledger)] == ["nfh.nurse", "monitor"]


def test_a_refusal_names_the_line_and_the_login_not_the_first_lines_user(
    ledger: TrialLedger, tmp_path: Path
) -> None:
    staffed(ledger, tmp_path)
    dicts = [{**L.screening("NFH-001"), "user": "amms.pi"}, {**L.screening("AMMS-001"), "user": "dm"}]
    with pytest.raises(Refused) as refused:
        imported(ledger, dicts, "nfh.nurse")
    assert refused.value.problems == [
        "line 2: nfh.nurse (site_staff of NFH) may not act for site AMMS (participant AMMS-001)"
    ]
    [record] = refusals(ledger)
    assert (record.user, record.action) == ("nfh.nurse", "append ParticipantScreened")
    assert record.reason == refused.value.problems[0]
    assert clinical(ledger) == []


def test_a_line_cannot_set_its_source_attribution_itself(ledger: TrialLedger) -> None:
    with pytest.raises(InvalidInput, match="line 1: source_user: set by the ledger"):
        imported(ledger, [{**L.screening(), "source_user": "someone"}], "nfh.importer")
    assert clinical(ledger) == []


def test_a_retry_by_the_same_login_is_skipped(ledger: TrialLedger) -> None:
    dicts = [{**line, "id": f"src-{n}", "user": "legacy.crc"} for n, line in enumerate(L.treated())]
    assert len(imported(ledger, dicts, "nfh.importer")) == 3
    receipt = import_lines(ledger, io.BytesIO(L.jsonl(dicts).encode()), user="nfh.importer")
    assert (receipt.stored, receipt.skipped) == ([], ["src-0", "src-1", "src-2"])


names = st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sources=st.lists(st.none() | names, min_size=3, max_size=3), login=names)
def test_whatever_the_lines_claim_the_login_is_who_entered_them(
    sqlite_url: str, sources: list[str | None], login: str
) -> None:
    ledger = TrialLedger(sqlite_url)
    participant = f"NFH-{abs(hash((tuple(sources), login))) % 10**6:06d}"
    dicts = [
        {**line, "user": source} if source is not None else line
        for line, source in zip(L.treated(participant), sources, strict=True)
    ]
    imported(ledger, dicts, login)
    stored = [r for r in clinical(ledger) if r.participant == participant]
    assert [r.user for r in stored] == [login] * 3
    assert [r.source_user for r in stored] == [None if s == login else s for s in sources]


def test_command_line_import_refusal_names_the_line_and_the_login(store_url: str, tmp_path: Path) -> None:
    staffed(TrialLedger(store_url), tmp_path)
    source = tmp_path / "site.jsonl"
    source.write_text(
        L.jsonl([{**L.screening("NFH-001"), "user": "x"}, {**L.screening("ZSH-001"), "user": "dm"}])
    )
    result = CliRunner().invoke(main, ["--store", store_url, "--user", "nfh.nurse", "import", str(source)])
    assert result.exit_code == 3
    assert "line 2: nfh.nurse (site_staff of NFH) may not act for site ZSH" in result.stderr
    ok = CliRunner().invoke(main, ["--store", store_url, "--user", "dm", "--json", "import", str(source)])
    assert ok.exit_code == 0, ok.stderr
    audit = json.loads(CliRunner().invoke(main, ["--store", store_url, "--json", "audit"]).stdout)
    rows = {row["participant"]: row for row in audit["entries"] if row["type"] == "ParticipantScreened"}
    assert (rows["NFH-001"]["user"], rows["NFH-001"]["values"]["source_user"]) == ("dm", "x")
    assert (rows["ZSH-001"]["user"], "source_user" in rows["ZSH-001"]["values"]) == ("dm", False)
