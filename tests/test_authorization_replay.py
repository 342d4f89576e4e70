"""``verify`` replays authorization (issue 12, item 8), on SQLite and PostgreSQL.

Every sealed event must have been appended by a user who held a role allowing
it at that moment; an event that got in around the checks (written through the
aggregate and the seal, as a bypassing writer would) is named, first of all.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access, signatures, verification
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify_ledger
from ledger.domain.events import (
    ActionRefused,
    CMVLoadMeasured,
    DatabaseLocked,
    KeyRegistered,
    UserUpdated,
    convert,
)
from ledger.domain.participant import Participant
from tests import lines as L
from tests.staff import PASSPHRASE, staffed, store


@pytest.fixture
def ledger(store_url: str, tmp_path: Path) -> TrialLedger:
    ledger = TrialLedger(store_url)
    keys = staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    store(ledger, L.treated("AMMS-001"), user="amms.pi")
    signatures.sign(ledger, "nfh.pi", "NFH-001", "investigator_attestation", keys["nfh.pi"], PASSPHRASE)
    access.lock(ledger, "dm", "interim analysis")
    with pytest.raises(access.Refused):
        access.unlock(ledger, "monitor", "curious")
    access.unlock(ledger, "dm", "done")
    return ledger


def forge_cmv(ledger: TrialLedger, participant: str, user: str) -> str:
    """A CMV load appended around every check (the aggregate, then the seal); its event id."""
    aggregate = ledger.repository.get(participant)
    assert isinstance(aggregate, Participant)
    record = convert({**L.cmv(participant), "user": user, "site": participant.split("-")[0]}, CMVLoadMeasured)
    event_id = aggregate.append(record, ledger.protocol, dt.datetime.now(dt.UTC))
    ledger.save(aggregate)
    return event_id


def forge_log(ledger: TrialLedger, log: type[access.RecordLog], fields: dict[str, object], kind: type) -> str:
    record = convert(fields, kind)
    stream = log.append(log.load(ledger), record, dt.datetime.now(dt.UTC))
    event_id: str = stream.pending_events[-1].record.id  # type: ignore[attr-defined]
    ledger.save(stream)
    return event_id


def position_of(ledger: TrialLedger, event_id: str) -> int:
    return next(e.position for e in ledger.entries() if e.record.id == event_id)


def test_a_ledger_written_through_its_checks_verifies(ledger: TrialLedger) -> None:
    access.update_user(ledger, "dm", name="nfh.pi", role="monitor", user_site=None, reason="left the site")
    verdict = verify_ledger(ledger)
    assert verdict.ok, verdict.to_json()


def test_an_event_forged_for_another_site_is_named(ledger: TrialLedger) -> None:
    event_id = forge_cmv(ledger, "AMMS-001", "nfh.nurse")
    forge_cmv(ledger, "AMMS-001", "nfh.nurse")  # the second one is counted, the first named
    verdict = verify_ledger(ledger)
    assert not verdict.ok and verdict.sealed  # the seal is intact: only the replay finds it
    bad = verdict.to_json()["first_bad"]
    assert (bad["position"], bad["event_id"]) == (position_of(ledger, event_id), event_id)
    assert bad["problem"] == (
        "appended without permission: nfh.nurse (site_staff of NFH) may not act for site AMMS"
        " (participant AMMS-001)"
    )
    assert verdict.to_json()["authorization"]["count"] == 2


def test_the_role_held_at_that_moment_counts(ledger: TrialLedger) -> None:
    before = forge_cmv(ledger, "NFH-001", "nfh.pi")  # an investigator of NFH then: allowed
    access.update_user(ledger, "dm", name="nfh.pi", role="monitor", user_site=None, reason="left the site")
    after = forge_cmv(ledger, "NFH-001", "nfh.pi")
    [row] = verify_ledger(ledger).to_json()["authorization"]["unauthorized"]
    assert (row["event_id"], row["reason"]) == (after, "nfh.pi (monitor) may not append clinical data")
    assert before != after


def test_a_lock_by_a_monitor_and_a_key_registered_for_someone_else_are_named(ledger: TrialLedger) -> None:
    key = forge_log(
        ledger, access.Registry, {"name": "nfh.pi", "public_key": "ab" * 32, "user": "dm"}, KeyRegistered
    )
    lock = forge_log(ledger, access.Trial, {"reason": "mine now", "user": "monitor"}, DatabaseLocked)
    rows = verify_ledger(ledger).to_json()["authorization"]["unauthorized"]
    assert [(r["event_id"], r["reason"]) for r in rows] == [
        (key, "dm registered a key for nfh.pi: only its owner registers a key"),
        (lock, "monitor (monitor) may not lock the ledger"),
    ]


def test_the_replay_run_beside_the_seal_names_the_same_events(
    ledger: TrialLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a large ledger the replay runs in a process of its own (issue 14): same verdict."""
    forge_cmv(ledger, "AMMS-001", "nfh.nurse")
    forge_log(ledger, access.Trial, {"reason": "mine now", "user": "monitor"}, DatabaseLocked)
    after = verify_ledger(ledger).to_json()
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)
    assert verify_ledger(ledger).to_json() == after
    assert after["authorization"]["count"] == 2


def test_command_line_verify_exits_1_naming_the_event(ledger: TrialLedger, store_url: str) -> None:
    event_id = forge_cmv(ledger, "AMMS-001", "monitor")
    result = CliRunner().invoke(main, ["--store", store_url, "verify"])
    assert result.exit_code == 1
    assert (
        f"UNAUTHORIZED CMVLoadMeasured {event_id} at position {position_of(ledger, event_id)}"
        in result.stdout
    )
    result = CliRunner().invoke(main, ["--store", store_url, "--json", "verify"])
    assert result.exit_code == 1 and json.loads(result.stdout)["first_bad"]["event_id"] == event_id


def test_a_role_change_forged_past_the_checks_grants_nothing(ledger: TrialLedger) -> None:
    """The users as the application reads them skip what ``verify`` names (issue 12, items 2 and 8)."""
    fields = {"name": "nfh.nurse", "role": "data_manager", "reason": "promoted", "user": "nfh.nurse"}
    promoted = forge_log(ledger, access.Registry, fields, UserUpdated)
    registry = access.Registry.load(ledger)
    assert registry is not None and registry.users["nfh.nurse"].role == "site_staff"
    with pytest.raises(access.Refused, match=r"^nfh.nurse \(site_staff\) may not lock the ledger$"):
        access.lock(ledger, "nfh.nurse", "mine now")
    [row] = verify_ledger(ledger).to_json()["authorization"]["unauthorized"]
    assert (row["event_id"], row["reason"]) == (
        promoted,
        "nfh.nurse (site_staff) may not change users' roles and sites",
    )


def test_a_record_that_is_no_users_in_their_stream_is_skipped_and_named(ledger: TrialLedger) -> None:
    """Written past the checks into the users' stream, it leaves every command working."""
    fields = {"action": "user add", "reason": "filed in the wrong stream", "user": "dm"}
    misplaced = forge_log(ledger, access.Registry, fields, ActionRefused)
    assert store(ledger, [L.cmv("NFH-001")]).stored
    [row] = verify_ledger(ledger).to_json()["authorization"]["unauthorized"]
    assert (row["event_id"], row["reason"]) == (
        misplaced,
        "ActionRefused is not a record of the users' stream",
    )
