"""Protocol versions as events: adopted, shown, and each participant judged under theirs (SPEC section 2)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access
from ledger.application.protocols import adopt, adopt_at_init, adopted_versions, protocol_versions
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.protocol import DEFAULT_PROTOCOL, parse_protocol
from ledger.domain.rules.eligibility import failed_criteria
from ledger.exchange.sdtm import build_datasets
from projections.readmodel.queries import Monitor
from tests import lines as L

SHIPPED = DEFAULT_PROTOCOL.read_bytes()
# Amendment 1: the upper age limit rises from 65 to 70, from 1 January 2015.
AMENDED = SHIPPED.replace(b'version = "1.0"', b'version = "2.0"').replace(b"age_max = 65", b"age_max = 70")
AMENDMENT_DAY = dt.date(2015, 1, 1)


def amended_ledger(store_url: str) -> TrialLedger:
    ledger = TrialLedger(store_url)
    adopt_at_init(ledger, "dm")
    adopt(ledger, "dm", AMENDED, parse_protocol(AMENDED, "amendment"), AMENDMENT_DAY, "amendment 1: age")
    return ledger


def older(participant: str, screened: str, enrolled: str, **fields: object) -> list[dict[str, object]]:
    """A participant aged 68 (eligible only under the amendment), screened and enrolled on these dates."""
    return [
        L.screening(participant, effective=screened, consent_date=screened, age_years=68, **fields),
        L.enrollment(participant, effective=enrolled),
    ]


def screened_around_the_amendment(store_url: str) -> TrialLedger:
    """An amended ledger with two 68-year-olds never enrolled: NFH-004 screened before, NFH-005 after."""
    ledger = amended_ledger(store_url)
    ledger.record(
        L.as_lines(
            [
                L.screening("NFH-004", effective="2014-12-30", consent_date="2014-12-30", age_years=68),
                L.screening("NFH-005", effective="2015-01-03", consent_date="2015-01-03", age_years=68),
            ]
        ),
        user="nfh.chen",
    )
    return ledger


def test_init_adopts_the_shipped_file_once(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    first = adopt_at_init(ledger, "dm")
    assert first is not None and not first.already
    assert adopt_at_init(ledger, "dm") is None  # init run again adopts nothing more
    [entry] = adopted_versions(ledger)
    assert entry.to_json() | {"recorded_at": None} == {
        "event_id": "PROTOCOL#1",
        "study": "NFH-MSC-CMV-2014",
        "version": "1.0",
        "effective": "2014-01-01",
        "sha256": hashlib.sha256(SHIPPED).hexdigest(),
        "recorded_at": None,
        "user": "dm",
        "reason": "adopted by init",
    }
    assert entry.record.content.encode() == SHIPPED  # the ledger keeps the file itself


def test_a_participant_enrolled_after_the_amendment_is_judged_under_it_one_before_under_the_old(
    store_url: str,
) -> None:
    ledger = amended_ledger(store_url)
    # Before the amendment's effective date: version 1.0 (age 14-65) refuses a 68-year-old.
    with pytest.raises(Refused) as refused:
        ledger.record(L.as_lines(older("NFH-001", "2014-12-01", "2014-12-10")), user="nfh.chen")
    assert refused.value.problems == [
        "line 2: NFH-001: not eligible for enrollment: age: 68 years on the consent date, outside 14-65"
    ]
    # Screened before, enrolled after: the enrollment date decides, version 2.0 (14-70) admits.
    ledger.record(L.as_lines(older("NFH-002", "2014-12-20", "2015-01-02")), user="nfh.chen")
    # Entered with a deviation before the amendment: still a deviation, judged under 1.0 forever.
    early = older("NFH-003", "2014-11-01", "2014-11-05")
    early[1]["deviation"] = "enrolled at 68 before amendment 1"
    ledger.record(L.as_lines(early), user="nfh.chen")

    status = Monitor(ledger).status(dt.date(2015, 6, 30), None)
    rows = {row["participant"]: row for row in status["participants"]}
    assert {code: row["protocol_version"] for code, row in rows.items()} == {
        "NFH-002": "2.0",
        "NFH-003": "1.0",
    }
    assert rows["NFH-002"]["status"] == "enrolled" and rows["NFH-002"]["flags"] == []
    assert rows["NFH-003"]["flags"] == ["eligibility_deviation"]
    assert [v["version"] for v in status["protocol_versions"]] == ["1.0", "2.0"]
    endpoints = Monitor(ledger).endpoints(dt.date(2015, 6, 30), None)
    assert [v["version"] for v in endpoints["protocol_versions"]] == ["1.0", "2.0"]
    assert endpoints["primary_itt"]["N"] == 2


def test_a_participant_never_enrolled_is_judged_on_the_screening_date(store_url: str) -> None:
    ledger = screened_around_the_amendment(store_url)
    rows = {r["participant"]: r for r in Monitor(ledger).status(dt.date(2015, 6, 30), None)["participants"]}
    assert (rows["NFH-004"]["status"], rows["NFH-004"]["protocol_version"]) == ("screen_failed", "1.0")
    assert (rows["NFH-005"]["status"], rows["NFH-005"]["protocol_version"]) == ("screened", "2.0")


def test_known_before_the_amendment_only_the_first_version_judges(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    adopt_at_init(ledger, "dm")
    ledger.record(L.as_lines([L.screening("NFH-006", effective="2015-02-01", consent_date="2015-02-01",
                                          age_years=68)]), user="nfh.chen")  # fmt: skip
    before = dt.datetime.now(dt.UTC)
    adopt(ledger, "dm", AMENDED, parse_protocol(AMENDED, "amendment"), AMENDMENT_DAY, "amendment 1: age")
    as_of = dt.date(2015, 6, 30)
    then = Monitor(ledger).status(as_of, before)["participants"]
    now = Monitor(ledger).status(as_of, None)["participants"]
    assert [(r["status"], r["protocol_version"]) for r in then] == [("screen_failed", "1.0")]
    assert [(r["status"], r["protocol_version"]) for r in now] == [("screened", "2.0")]
    assert [v.version for v in protocol_versions(ledger, before).adopted] == ["1.0"]


def test_adopting_again_is_safe_and_a_version_names_one_text(store_url: str) -> None:
    ledger = amended_ledger(store_url)
    again = adopt(ledger, "dm", AMENDED, parse_protocol(AMENDED, "a"), AMENDMENT_DAY, "retry")
    assert again.already and again.event_id == "PROTOCOL#2"
    other = AMENDED.replace(b"age_max = 70", b"age_max = 72")
    with pytest.raises(
        InvalidInput, match=r"^version: 2\.0 is already adopted \(PROTOCOL#2\) with other content"
    ):
        adopt(ledger, "dm", other, parse_protocol(other, "b"), dt.date(2015, 3, 1), "typo")
    unversioned = SHIPPED.replace(b'version = "1.0"\n', b"")
    with pytest.raises(InvalidInput, match=r"^version: the protocol file must name its version"):
        adopt(ledger, "dm", unversioned, parse_protocol(unversioned, "c"), dt.date(2015, 3, 1), "no version")
    foreign = SHIPPED.replace(b'study = "NFH-MSC-CMV-2014"', b'study = "OTHER"').replace(b'"1.0"', b'"9.0"')
    with pytest.raises(InvalidInput, match=r"^study: the ledger's protocol is NFH-MSC-CMV-2014, not OTHER"):
        adopt(ledger, "dm", foreign, parse_protocol(foreign, "d"), dt.date(2015, 3, 1), "wrong study")
    assert [e.record.version for e in adopted_versions(ledger)] == ["1.0", "2.0"]


def test_only_a_data_manager_adopts_and_a_refusal_is_recorded(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    adopt_at_init(ledger, "dm")
    access.register(ledger, "dm", name="dm", full_name="Dana M", role="data_manager", user_site=None)
    access.register(ledger, "dm", name="mon", full_name="Mo N", role="monitor", user_site=None)
    with pytest.raises(Refused, match=r"^mon \(monitor\) may not adopt protocol versions$"):
        adopt(ledger, "mon", AMENDED, parse_protocol(AMENDED, "a"), AMENDMENT_DAY, "not mine to adopt")
    refusals = [e.record for e in ledger.entries() if e.record.type == "ActionRefused"]
    assert [(r.user, r.action) for r in refusals] == [("mon", "protocol adopt")]
    assert len(adopted_versions(ledger)) == 1


def test_the_rules_read_the_adopted_text_not_the_file_on_disk(store_url: str) -> None:
    ledger = amended_ledger(store_url)
    versions = protocol_versions(ledger)
    amended = versions.in_force(AMENDMENT_DAY).protocol
    assert amended.eligibility.age_max == 70
    screening = L.as_lines([L.screening("NFH-007", age_years=68)])[0].record
    assert failed_criteria(screening, dt.date(2015, 2, 1), amended) == []  # type: ignore[arg-type]
    assert versions.in_force(dt.date(2014, 6, 1)).protocol.eligibility.age_max == 65


def test_the_command_line_adopts_shows_and_refuses(tmp_path: Path) -> None:
    store = str(tmp_path / "trial.db")
    amendment = tmp_path / "amendment-1.toml"
    amendment.write_bytes(AMENDED)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(main, ["--store", store, "--user", "dm", *args])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    assert run("protocol", "show")[0] == 2  # a read never creates the store
    assert not Path(store).exists()
    code, out = run("--json", "init")
    assert code == 0 and json.loads(out)["adopted"]["version"] == "1.0"
    code, out = run(
        "--json", "protocol", "adopt", str(amendment), "--effective", "2015-01-01", "--reason", "am 1"
    )
    assert code == 0, out
    assert json.loads(out) == {
        "event_id": "PROTOCOL#2",
        "version": "2.0",
        "effective": "2015-01-01",
        "sha256": hashlib.sha256(AMENDED).hexdigest(),
        "already_adopted": False,
    }
    code, out = run("--json", "protocol", "show")
    assert code == 0
    shown = json.loads(out)["versions"]
    assert [(v["version"], v["effective"], v["user"]) for v in shown] == [
        ("1.0", "2014-01-01", "dm"),
        ("2.0", "2015-01-01", "dm"),
    ]
    code, out = run("protocol", "adopt", str(amendment), "--effective", "2015-01-01", "--reason", "retry")
    assert code == 0 and "already adopted as PROTOCOL#2" in out
    # Bad input: exit 2 naming the field, nothing stored.
    broken = tmp_path / "broken.toml"
    broken.write_text("study = [")
    for args, field in (
        ((str(broken), "--effective", "2015-01-01"), "file"),
        ((str(tmp_path / "missing.toml"), "--effective", "2015-01-01"), "file"),
        (("/dev/zero", "--effective", "2015-01-01"), "file"),  # endless: read no further than the limit
        ((str(amendment), "--effective", "2015-13-01"), "--effective"),
    ):
        code, out = run("protocol", "adopt", *args, "--reason", "bad")
        assert code == 2, out
        assert field in out.splitlines()[-1]
    assert len(json.loads(run("--json", "protocol", "show")[1])["versions"]) == 2


def test_the_sdtm_export_judges_each_participant_under_their_version(store_url: str) -> None:
    ledger = screened_around_the_amendment(store_url)
    as_of = dt.date(2015, 6, 30)
    versions = protocol_versions(ledger)
    dm = build_datasets(ledger.entries(), ledger.protocol, as_of, versions).datasets["DM"].rows
    reasons = {row["USUBJID"].removeprefix("NFH-MSC-CMV-2014-"): row["ARMNRS"] for row in dm}
    assert reasons == {"NFH-004": "SCREEN FAILURE", "NFH-005": "NOT ASSIGNED"}


def test_a_new_demo_store_adopts_the_protocol_as_init_does(tmp_path: Path) -> None:
    store = str(tmp_path / "demo.db")
    result = CliRunner().invoke(main, ["--store", store, "--user", "dm", "demo", "--participants", "3"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(main, ["--store", store, "--json", "protocol", "show"])
    assert [(v["version"], v["effective"]) for v in json.loads(shown.output)["versions"]] == [
        ("1.0", "2014-01-01")
    ]
