"""Role changes and deactivation are events of the ``USERS`` stream (issue 12, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify_ledger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import ActionRefused, UserDeactivated, UserUpdated
from tests import lines as L
from tests.staff import add_user, staffed, store


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> TrialLedger:
    ledger = TrialLedger(store_url)
    staffed(ledger, tmp_path)
    return ledger


def registry(ledger: TrialLedger) -> access.Registry:
    users = access.Registry.load(ledger)
    assert users is not None
    return users


def refusals(ledger: TrialLedger) -> list[ActionRefused]:
    return [e.record for e in ledger.entries() if isinstance(e.record, ActionRefused)]


def test_a_site_change_takes_effect_at_once(ledger: TrialLedger) -> None:
    store(ledger, L.treated("NFH-001"))
    record = access.update_user(
        ledger, "dm", name="nfh.nurse", role=None, user_site="AMMS", reason="moved to AMMS"
    )
    assert (record.role, record.user_site, record.user, record.id) == ("site_staff", "AMMS", "dm", "USERS#13")
    assert registry(ledger).users["nfh.nurse"].user_site == "AMMS"
    with pytest.raises(Refused, match=r"nfh.nurse \(site_staff of AMMS\) may not act for site NFH"):
        store(ledger, L.treated("NFH-002"))
    assert store(ledger, L.treated("AMMS-001")).stored


def test_a_role_change_takes_effect_at_once_and_drops_the_site_of_a_trial_wide_role(
    ledger: TrialLedger,
) -> None:
    record = access.update_user(ledger, "dm", name="nfh.pi", role="monitor", user_site=None, reason="left")
    assert (record.role, record.user_site) == ("monitor", None)
    with pytest.raises(Refused, match=r"nfh.pi \(monitor\) may not append clinical data"):
        store(ledger, L.treated("NFH-001"), user="nfh.pi")
    back = access.update_user(
        ledger, "dm", name="nfh.pi", role="investigator", user_site="NFH", reason="back"
    )
    assert (back.role, back.user_site) == ("investigator", "NFH")
    assert store(ledger, L.treated("NFH-001"), user="nfh.pi").stored


def test_a_site_role_needs_its_site(ledger: TrialLedger) -> None:
    with pytest.raises(InvalidInput, match="user_site: a site_staff belongs to one site"):
        access.update_user(ledger, "dm", name="monitor", role="site_staff", user_site=None, reason="r")
    with pytest.raises(InvalidInput, match="user_site: a monitor acts for the whole trial"):
        access.update_user(ledger, "dm", name="monitor", role=None, user_site="NFH", reason="r")
    with pytest.raises(InvalidInput, match="unknown site code 'XYZ'"):
        access.update_user(ledger, "dm", name="nfh.pi", role=None, user_site="XYZ", reason="r")
    with pytest.raises(InvalidInput, match=r"role: nfh.pi is already investigator of NFH"):
        access.update_user(ledger, "dm", name="nfh.pi", role="investigator", user_site=None, reason="r")
    with pytest.raises(InvalidInput, match="name: user nobody is not registered"):
        access.update_user(ledger, "dm", name="nobody", role="monitor", user_site=None, reason="r")
    assert not [e for e in ledger.entries() if isinstance(e.record, UserUpdated)]


def test_a_deactivated_user_can_do_nothing(ledger: TrialLedger, tmp_path: Path) -> None:
    assert access.deactivate_user(ledger, "dm", name="nfh.nurse", reason="left the trial") == "USERS#13"
    with pytest.raises(Refused, match=r"user nfh.nurse is deactivated \(left the trial\)"):
        store(ledger, L.treated("NFH-001"))
    with pytest.raises(InvalidInput, match=r"name: user nfh\.nurse is deactivated"):
        access.update_user(ledger, "dm", name="nfh.nurse", role=None, user_site="AMMS", reason="r")
    with pytest.raises(InvalidInput, match=r"name: user nfh\.nurse is deactivated"):
        access.deactivate_user(ledger, "dm", name="nfh.nurse", reason="again")
    access.update_user(ledger, "dm", name="monitor", role="data_manager", user_site=None, reason="cover")
    access.deactivate_user(ledger, "monitor", name="dm", reason="on leave")
    with pytest.raises(Refused, match="user dm is deactivated"):
        access.lock(ledger, "dm", "interim")
    with pytest.raises(Refused, match="user dm is deactivated"):
        add_user(ledger, tmp_path / "k", "new.nurse", "site_staff", "NFH", by="dm")
    assert [r.user for r in refusals(ledger)] == ["nfh.nurse", "dm", "dm"]


def test_only_data_managers_change_users_and_the_last_one_stays(ledger: TrialLedger) -> None:
    for actor in ("nfh.pi", "monitor", "auditor"):
        with pytest.raises(Refused, match="may not change users' roles and sites"):
            access.update_user(ledger, actor, name="nfh.nurse", role="monitor", user_site=None, reason="r")
        with pytest.raises(Refused, match="may not deactivate users"):
            access.deactivate_user(ledger, actor, name="nfh.nurse", reason="r")
    with pytest.raises(Refused, match="dm is the last active data_manager"):
        access.deactivate_user(ledger, "dm", name="dm", reason="r")
    with pytest.raises(Refused, match="dm is the last active data_manager"):
        access.update_user(ledger, "dm", name="dm", role="auditor", user_site=None, reason="r")
    assert len(refusals(ledger)) == 8
    assert registry(ledger).active("data_manager")[0].name == "dm"


def test_the_registry_folds_to_the_state_at_every_moment(ledger: TrialLedger) -> None:
    access.update_user(ledger, "dm", name="nfh.nurse", role="investigator", user_site=None, reason="promoted")
    access.deactivate_user(ledger, "dm", name="nfh.nurse", reason="left")
    history = []
    users = access.Users()
    for entry in ledger.entries():
        if isinstance(entry.record, UserUpdated | UserDeactivated) or entry.record.type == "UserRegistered":
            users.admit(entry.record)
            if "nfh.nurse" in users.users:
                member = users.users["nfh.nurse"]
                history.append((member.role, member.user_site, "nfh.nurse" in users.deactivated))
    assert history[-3:] == [
        ("site_staff", "NFH", False),
        ("investigator", "NFH", False),
        ("investigator", "NFH", True),
    ]
    assert access.users_of(ledger.entries()).users["nfh.nurse"].role == "investigator"


def test_the_commands_print_what_they_recorded(store_url: str, tmp_path: Path) -> None:
    ledger = TrialLedger(store_url)
    staffed(ledger, tmp_path)
    runner = CliRunner()
    base = ["--store", store_url, "--user", "dm", "--json", "user"]
    result = runner.invoke(main, [*base, "update", "monitor", "--role", "auditor", "--reason", "new job"])
    assert result.exit_code == 0, result.output
    expected = {"user": "monitor", "role": "auditor", "site": None, "event": "USERS#13"}
    assert json.loads(result.output) == expected
    result = runner.invoke(main, [*base, "deactivate", "monitor", "--reason", "left"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"user": "monitor", "deactivated": True, "event": "USERS#14"}
    result = runner.invoke(main, [*base[:-2], "user", "update", "nfh.pi", "--role", "boss", "--reason", "r"])
    assert result.exit_code == 2
    assert "role: invalid enum value 'boss'" in result.stderr
    result = runner.invoke(main, [*base[:-2], "user", "deactivate", "dm", "--reason", "r"])
    assert result.exit_code == 3
    assert "dm is the last active data_manager" in result.stderr
    audit = runner.invoke(main, ["--store", store_url, "audit"])
    assert audit.exit_code == 0
    assert "UserUpdated" in audit.output and "UserDeactivated" in audit.output


@pytest.mark.parametrize("command", [["update", "--role", "monitor"], ["deactivate"]])
def test_on_an_open_ledger_no_user_can_be_changed_and_nothing_is_stored(
    store_url: str, command: list[str]
) -> None:
    TrialLedger(store_url, create=True)
    before = len(list(TrialLedger(store_url).entries()))
    [verb, *options] = command
    result = CliRunner().invoke(
        main, ["--store", store_url, "--user", "dm", "user", verb, "nobody", *options, "--reason", "r"]
    )
    assert (result.exit_code, result.stderr) == (2, "error: name: user nobody is not registered\n")
    assert len(list(TrialLedger(store_url).entries())) == before


def test_a_stored_role_change_of_no_registered_user_leaves_the_ledger_readable(ledger: TrialLedger) -> None:
    """Written past the ledger's checks (the use case refuses it): reads go on, verify names it."""
    forged = access.checked(
        UserUpdated, {"name": "nobody", "role": "monitor", "user_site": None, "reason": "r", "user": "dm"}
    )
    ledger.save(access.Registry.append(registry(ledger), forged, ledger.clock()))
    assert "nobody" not in registry(ledger).users
    assert store(ledger, L.treated("NFH-001")).stored
    [row] = verify_ledger(ledger).to_json()["authorization"]["unauthorized"]
    assert (row["type"], row["reason"]) == ("UserUpdated", "nobody was not a registered user")
