"""Roles, refused attempts and the database lock (issue #6), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput, Refused
from ledger.domain.events import ActionRefused, DatabaseLocked, DatabaseUnlocked
from tests import lines as L
from tests.staff import PASSPHRASE, add_user, staffed, store


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    return TrialLedger(store_url)


def types(ledger: TrialLedger) -> list[str]:
    return [entry.record.type for entry in ledger.entries()]


def refusals(ledger: TrialLedger) -> list[ActionRefused]:
    return [e.record for e in ledger.entries() if isinstance(e.record, ActionRefused)]


def test_an_open_ledger_refuses_no_one(ledger: TrialLedger) -> None:
    assert store(ledger, L.treated("AMMS-001"), user="anyone").stored
    assert access.Registry.load(ledger) is None
    assert access.lock(ledger, "anyone", "interim analysis") == "TRIAL#1"
    assert access.unlock(ledger, "someone.else", "done") == "TRIAL#2"
    assert types(ledger)[-2:] == ["DatabaseLocked", "DatabaseUnlocked"]


def test_the_first_registered_user_must_be_a_data_manager(ledger: TrialLedger, tmp_path: Path) -> None:
    with pytest.raises(Refused, match="first registered user must be a data_manager"):
        add_user(ledger, tmp_path, "nfh.nurse", "site_staff", "NFH", by="nfh.nurse")
    add_user(ledger, tmp_path, "dm", "data_manager", by="dm")
    users = access.Registry.load(ledger)
    assert users is not None and users.users["dm"].role == "data_manager"
    with pytest.raises(InvalidInput, match="dm is already registered"):
        add_user(ledger, tmp_path / "again", "dm", "data_manager")
    with pytest.raises(InvalidInput, match="user_site"):
        add_user(ledger, tmp_path, "roaming", "site_staff")
    with pytest.raises(InvalidInput, match="unknown site code 'XYZ'"):
        add_user(ledger, tmp_path, "far", "investigator", "XYZ")


def test_once_users_are_registered_unknown_users_are_refused_and_recorded(
    ledger: TrialLedger, tmp_path: Path
) -> None:
    add_user(ledger, tmp_path, "dm", "data_manager", by="dm")
    before = types(ledger)
    with pytest.raises(Refused, match="user 'stranger' is not registered"):
        store(ledger, L.treated("NFH-001"), user="stranger")
    assert types(ledger) == [*before, "ActionRefused"]
    refused = refusals(ledger)[-1]
    assert (refused.user, refused.participant) == ("stranger", "NFH-001")
    assert refused.action == "append MSCInfused, ParticipantEnrolled, ParticipantScreened"


def test_site_roles_write_only_for_their_own_site(ledger: TrialLedger, tmp_path: Path) -> None:
    staffed(ledger, tmp_path)
    assert store(ledger, L.treated("NFH-001"), user="nfh.nurse").stored
    assert store(ledger, L.treated("AMMS-001"), user="amms.pi").stored
    with pytest.raises(Refused, match=r"nfh.nurse \(site_staff of NFH\) may not act for site AMMS"):
        store(ledger, [L.cmv("AMMS-001")], user="nfh.nurse")
    with pytest.raises(Refused, match="may not act for site AMMS"):
        store(ledger, [L.correction("AMMS-001-inf1", {"cells_per_kg": 990000})], user="nfh.pi")
    with pytest.raises(Refused, match="may not act for site AMMS"):
        store(ledger, [L.cmv("NFH-001", site="AMMS")], user="nfh.nurse")
    assert [r.participant for r in refusals(ledger)] == ["AMMS-001", "AMMS-001", "NFH-001"]
    # Data managers act for every site.
    assert store(ledger, [L.correction("AMMS-001-inf1", {"cells_per_kg": 990000})], user="dm").stored


@pytest.mark.parametrize("reader", ["monitor", "auditor"])
def test_monitors_and_auditors_read_only(ledger: TrialLedger, tmp_path: Path, reader: str) -> None:
    staffed(ledger, tmp_path)
    with pytest.raises(Refused, match=f"{reader} \\({reader}\\) may not append clinical data"):
        store(ledger, L.treated("NFH-001"), user=reader)
    with pytest.raises(Refused, match="may not lock the ledger"):
        access.lock(ledger, reader, "curious")
    with pytest.raises(Refused, match="may not register users"):
        add_user(ledger, tmp_path / "x", "friend", "monitor", by=reader)
    assert [r.action for r in refusals(ledger)] == [
        "append MSCInfused, ParticipantEnrolled, ParticipantScreened",
        "lock",
        "user add",
    ]
    assert "ParticipantScreened" not in types(ledger)


def test_only_data_managers_lock_and_unlock(ledger: TrialLedger, tmp_path: Path) -> None:
    staffed(ledger, tmp_path)
    with pytest.raises(Refused, match=r"nfh.pi \(investigator\) may not lock the ledger"):
        access.lock(ledger, "nfh.pi", "why not")
    access.lock(ledger, "dm", "interim analysis")
    with pytest.raises(Refused, match="may not unlock the ledger"):
        access.unlock(ledger, "nfh.pi", "let me in")
    access.unlock(ledger, "dm", "analysis done")
    # The refusal while locked is recorded too (issue 12, item 7): a refusal is not clinical data.
    assert types(ledger)[-4:] == ["ActionRefused", "DatabaseLocked", "ActionRefused", "DatabaseUnlocked"]
    assert [(r.user, r.action) for r in refusals(ledger)] == [("nfh.pi", "lock"), ("nfh.pi", "unlock")]


def test_the_lock_stops_every_append_until_unlocked(ledger: TrialLedger, tmp_path: Path) -> None:
    staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    access.lock(ledger, "dm", "interim analysis")
    size = len(types(ledger))
    for attempt in (
        lambda: store(ledger, [L.cmv("NFH-001")]),
        lambda: access.lock(ledger, "dm", "again"),
        lambda: add_user(ledger, tmp_path / "late", "late", "auditor"),
    ):
        with pytest.raises(Refused, match=r"locked since .* by dm \(interim analysis\); nothing stored"):
            attempt()
    with pytest.raises(Refused, match="may not append"):
        store(ledger, [L.cmv("NFH-001")], user="monitor")
    # Nothing but the record of each refusal was appended (issue 12, item 7).
    assert types(ledger)[size:] == ["ActionRefused"] * 4
    assert [(r.user, r.action) for r in refusals(ledger)] == [
        ("nfh.nurse", "append CMVLoadMeasured"),
        ("dm", "lock"),
        ("dm", "user add"),
        ("monitor", "append CMVLoadMeasured"),
    ]
    assert all("locked since" in r.reason for r in refusals(ledger)[:3])
    access.unlock(ledger, "dm", "analysis done")
    with pytest.raises(Refused, match="the ledger is not locked"):
        access.unlock(ledger, "dm", "twice")
    assert refusals(ledger)[-1].reason == "unlock: the ledger is not locked"
    assert store(ledger, [L.cmv("NFH-001")]).stored == ["NFH-001#4"]


def test_a_writer_racing_the_lock_is_refused_inside_its_transaction(store_url: str) -> None:
    """The writer has done its checks when the lock commits; its save must still be refused."""
    locker = TrialLedger(store_url)

    class Racing(TrialLedger):
        name = TrialLedger.name  # the same tables (the library names them after the application)

        def save(self, *objs, **kwargs):  # type: ignore[no-untyped-def]
            if not types(locker):
                access.lock(locker, "dm", "database lock")
            return super().save(*objs, **kwargs)

    writer = Racing(store_url)
    with pytest.raises(Refused, match="locked since"):
        store(writer, L.treated("NFH-001"))
    assert types(locker) == ["DatabaseLocked", "ActionRefused"]


def test_lock_state_as_known_at_a_moment(ledger: TrialLedger) -> None:
    moments = iter(dt.datetime(2016, 1, day, tzinfo=dt.UTC) for day in range(1, 10))
    ledger.clock = lambda: next(moments)
    access.lock(ledger, "dm", "interim analysis")  # recorded on the 1st
    access.unlock(ledger, "dm", "done")  # the 2nd
    at_first = access.lock_state(ledger.entries(known_at=dt.datetime(2016, 1, 1, 12, tzinfo=dt.UTC)))
    assert at_first.to_json() == {
        "locked": True,
        "since": "2016-01-01T00:00:00Z",
        "by": "dm",
        "reason": "interim analysis",
    }
    assert not access.lock_state(ledger.entries()).locked
    assert [type(e.record) for e in ledger.entries()] == [DatabaseLocked, DatabaseUnlocked]


def test_trial_and_user_events_cannot_be_corrected(ledger: TrialLedger, tmp_path: Path) -> None:
    staffed(ledger, tmp_path)
    access.lock(ledger, "dm", "x")
    access.unlock(ledger, "dm", "y")
    for target in ("TRIAL#1", "USERS#1"):
        with pytest.raises(InvalidInput, match=f"target: {target} is not a participant's event"):
            store(ledger, [L.void(target)], user="dm")
    with pytest.raises(Refused, match="may not act for site TRIAL"):
        store(ledger, [L.void("TRIAL#1")], user="nfh.nurse")
    with pytest.raises(Refused, match="'no such user' is not registered"):
        store(ledger, [L.cmv("NFH-001")], user="no such user")
    # The refusals are recorded without what is not valid in a record (a user name, a participant code).
    assert [(r.user, r.participant) for r in refusals(ledger)] == [("nfh.nurse", None), (None, "NFH-001")]
    assert [type(e.record) for e in ledger.entries()][-4:] == [
        DatabaseLocked,
        DatabaseUnlocked,
        ActionRefused,
        ActionRefused,
    ]


def run(store_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--store", store_url, *args], env={"TL_PASS": PASSPHRASE})
    return result.exit_code, result.stdout, result.stderr


def test_command_line_roles_and_lock_exit_3_with_a_clear_message(store_url: str, tmp_path: Path) -> None:
    def add(actor: str, name: str, *options: str) -> tuple[int, str, str]:
        return run(store_url, "--user", actor, "--json", "user", "add", name, *options)

    code, _, err = add("nurse", "nurse", "--role", "site_staff", "--site", "NFH", "--full-name", "N Urse")
    assert code == 3 and "first registered user must be a data_manager" in err
    code, out, _ = add("dm", "dm", "--role", "data_manager", "--full-name", "Dana Manager")
    assert code == 0 and json.loads(out)["event"] == "USERS#1"
    code, out, _ = run(store_url, "--user", "dm", "--json", "lock", "--reason", "interim analysis")
    assert code == 0 and json.loads(out) == {"locked": True, "event": "TRIAL#1", "reason": "interim analysis"}
    screen = [
        "screen", "--participant", "NFH-001", "--site", "NFH", "--effective", "2014-01-06", "--age-years",
        "42", "--sex", "F", "--refractory-cmv", "infection", "--consent-date", "2014-01-05", "--consent-by",
        "participant", "--hr", "78", "--rr", "16", "--sbp", "118", "--dbp", "76",
    ]  # fmt: skip
    code, _, err = run(store_url, "--user", "dm", *screen)
    assert code == 3 and "the ledger is locked since" in err and "nothing stored" in err
    assert run(store_url, "--user", "dm", "unlock", "--reason", "done")[0] == 0
    code, _, err = run(store_url, "--user", "stranger", *screen)
    assert code == 3 and "user 'stranger' is not registered" in err
    assert run(store_url, "--user", "dm", *screen)[0] == 0
