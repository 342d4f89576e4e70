"""The lock is what the sealed events say (issue 11, item 7), on SQLite and PostgreSQL.

An attacker with database access tries to open a locked ledger without an
unlock: by clearing a cached lock with plain SQL (older versions kept the lock in
a ``ledger_meta`` row, so one statement let appends through), and by forging a
clinical event between a lock and its unlock with every hash rewritten.  The
first is refused inside the write transaction (exit 3, nothing stored); the
second is named by ``verify`` (exit 1).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access, verification
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.entry import Entry
from ledger.domain.errors import LockRefused, Refused
from ledger.domain.events import ActionRefused, DatabaseLocked
from ledger.storage.scan import snapshot
from tests import lines as L
from tests.staff import store
from tests.test_tamper import INSERT_EVENT, Attacker, edited


def cli(store_url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--store", store_url, "--user", "dm", *args], input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout


def test_clearing_a_cached_lock_with_sql_lets_nothing_through(store_url: str, tmp_path: Path) -> None:
    ledger = TrialLedger(store_url)
    store(ledger, L.treated("NFH-001"))
    assert cli(store_url, "lock", "--reason", "database lock")[0] == 0
    size = ledger.recorder.max_notification_id()
    attacker = Attacker(store_url)
    # What opened the ledger before: the lock's cache row emptied, or deleted.
    attacker.sql("UPDATE ledger_meta SET value = ? WHERE key = 'lock'", (b"",))
    attacker.sql("DELETE FROM ledger_meta WHERE key = 'lock'")
    attacker.close()
    line = tmp_path / "late.jsonl"
    line.write_text(L.jsonl([L.cmv("NFH-001", id="late-cmv")]))
    code, _ = cli(store_url, "import", str(line))
    assert code == 3
    # Only the record of the refusal (issue 12, item 7).
    assert ledger.recorder.max_notification_id() == size + 1
    assert [e.record.type for e in ledger.entries()][-1] == "ActionRefused"
    assert ledger.lookup(["late-cmv"]) == {}
    assert cli(store_url, "--json", "verify")[0] == 0
    assert json.loads(cli(store_url, "--json", "endpoints")[1])["lock"]["locked"] is True


@pytest.mark.parametrize("forged", ["clinical event", "refusal in the TRIAL stream"])
def test_an_event_forged_between_a_lock_and_its_unlock_is_named_by_verify(
    store_url: str, forged: str
) -> None:
    """Only the unlock and refusals in their own stream may follow a lock: a refusal record in
    the ``TRIAL`` stream would end the lock, so ``verify`` names it as the seal refuses it."""
    ledger = TrialLedger(store_url)
    store(ledger, [*L.treated("NFH-001"), L.cmv("NFH-001", id="cmv-1")])
    access.lock(ledger, "dm", "database lock")
    access.unlock(ledger, "dm", "query resolved")
    attacker = Attacker(store_url)
    rows = attacker.rows()
    (lock_at, lock_id), (unlock_at, unlock_id) = rows[-2], rows[-1]
    assert (lock_id, unlock_id) == ("TRIAL#1", "TRIAL#2")
    if forged == "clinical event":
        originator, _, topic, state = attacker.event(rows[3][0])
        state = edited(state, id="forged", value_iu_ml=150)
    else:  # the unlock's own event, made a refusal
        originator, _, topic, state = attacker.event(unlock_at)
        state = edited(state, type="ActionRefused", id="forged", action="unlock")
    # Make room: the unlock moves one position on, and the event is forged in its place,
    # then every hash from there on is rewritten so that the seal itself is coherent.
    attacker.move("{events}", attacker.pos, unlock_at, unlock_at + 1)
    attacker.move("ledger_entries", "position", unlock_at, unlock_at + 1)
    attacker.sql(INSERT_EVENT, (originator, 998, topic, state, unlock_at))
    attacker.sql(
        "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?)",
        (unlock_at, "forged", originator, b"", b"", b""),
    )
    attacker.reseal(unlock_at)
    attacker.close()
    code, out = cli(store_url, "--json", "verify")
    assert code == 1
    first_bad = json.loads(out)["first_bad"]
    assert first_bad == {
        "position": unlock_at,
        "event_id": "forged",
        "problem": f"this event was sealed while the ledger was locked (locked at position {lock_at};"
        " only the unlock and records of refused attempts may follow): the lock was bypassed",
    }
    # The rest of the store is coherent: the lock is the only thing verify can name.
    with snapshot(ledger) as snap:
        assert snap.event_count() == len(rows) + 1


@pytest.mark.parametrize("log", [access.Trial, access.ProtocolLog])
def test_during_a_lock_the_seal_takes_a_refusal_in_the_refusals_stream_only(
    store_url: str, log: type[access.RecordLog]
) -> None:
    """A refusal record sealed into the ``TRIAL`` stream would end the lock (its last event)."""
    ledger = TrialLedger(store_url)
    store(ledger, L.treated("NFH-001"))
    access.lock(ledger, "dm", "database lock")
    record = access.checked(ActionRefused, {"action": "unlock", "reason": "filed elsewhere", "user": "dm"})
    before = ledger.recorder.max_notification_id()
    with pytest.raises(LockRefused, match=r"the ledger is locked since .* by dm"):
        ledger.save(log.append(log.load(ledger), record, ledger.clock()))
    ledger.save(access.Refusals.append(access.Refusals.load(ledger), record, ledger.clock()))
    assert ledger.recorder.max_notification_id() == before + 1
    with pytest.raises(Refused, match="the ledger is locked since"):
        store(ledger, [L.cmv("NFH-001")])
    assert cli(store_url, "verify")[0] == 0


def test_a_lock_record_outside_the_trials_stream_locks_nothing() -> None:
    """Only the ``TRIAL`` stream locks, as the seal has it: a lock a login wrote elsewhere by hand
    (``verify`` names it) does not make the exports and endpoints say the data were locked."""
    at = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
    locked = DatabaseLocked(reason="hand-written", user="nfh.chen", id="USERS#9")
    assert access.lock_state([Entry(9, at, "USERS", locked)]).to_json()["locked"] is False
    assert access.lock_state([Entry(9, at, access.Trial.STREAM, locked)]).to_json()["locked"] is True


def test_two_halves_of_a_ledger_name_what_one_pass_names_wherever_they_meet(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large PostgreSQL ledger is recomputed in two halves at once (issue 14).  The second half
    cannot know whether the ledger was locked where it starts: split anywhere around a lock, the
    refused attempts recorded during it, an event forged in it and the unlock, the verdict is the
    one a single pass gives."""
    ledger = TrialLedger(pg_url)
    store(ledger, [*L.treated("NFH-001"), L.cmv("NFH-001", id="cmv-1")])
    access.lock(ledger, "dm", "database lock")
    with pytest.raises(Refused):
        store(ledger, [L.cmv("NFH-001", id="cmv-late")])  # recorded as a refused attempt
    access.unlock(ledger, "dm", "query resolved")
    store(ledger, [L.cmv("NFH-001", id="cmv-2", effective="2014-01-25")])
    positions = [position for position, _ in Attacker(pg_url).rows()]

    def verdicts() -> list[dict[str, object]]:
        """The one-pass verdict, then the verdict of every split."""
        monkeypatch.setattr(verification, "_half", lambda snap: None)
        found = [verification.verify(ledger).to_json()]
        for half in positions[:-1]:
            monkeypatch.setattr(verification, "_half", lambda snap, half=half: half)
            found.append(verification.verify(ledger).to_json())
        return found

    clean = verdicts()
    assert clean[0]["ok"] is True and all(verdict == clean[0] for verdict in clean)
    # An event forged right after the refused attempt, the seal rewritten around it.
    attacker = Attacker(pg_url)
    rows = attacker.rows()
    unlock_at = next(position for position, event_id in rows if event_id == "TRIAL#2")
    for later, _ in reversed(rows):
        if later >= unlock_at:
            attacker.move("{events}", attacker.pos, later, later + 1)
            attacker.move("ledger_entries", "position", later, later + 1)
    originator, _, topic, state = attacker.event(rows[3][0])
    attacker.sql(INSERT_EVENT, (originator, 998, topic, edited(state, id="forged-cmv"), unlock_at))
    attacker.sql(
        "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?)",
        (unlock_at, "forged-cmv", originator, b"", b"", b""),
    )
    attacker.reseal(unlock_at)
    attacker.close()
    positions = [position for position, _ in Attacker(pg_url).rows()]
    forged = verdicts()
    assert forged[0]["first_bad"]["position"] == unlock_at  # type: ignore[index]
    assert all(verdict == forged[0] for verdict in forged)
