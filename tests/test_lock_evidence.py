"""The lock is what the sealed events say (issue 11, item 7), on SQLite and PostgreSQL.

An attacker with database access tries to open a locked ledger without an
unlock: by clearing a cached lock with plain SQL (older versions kept the lock in
a ``ledger_meta`` row, so one statement let appends through), and by forging a
clinical event between a lock and its unlock with every hash rewritten.  The
first is refused inside the write transaction (exit 3, nothing stored); the
second is named by ``verify`` (exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from ledger.application import access
from ledger.application.trial_ledger import TrialLedger
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


def test_an_event_forged_between_a_lock_and_its_unlock_is_named_by_verify(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    store(ledger, [*L.treated("NFH-001"), L.cmv("NFH-001", id="cmv-1")])
    access.lock(ledger, "dm", "database lock")
    access.unlock(ledger, "dm", "query resolved")
    attacker = Attacker(store_url)
    rows = attacker.rows()
    (_, lock_id), (unlock_at, unlock_id) = rows[-2], rows[-1]
    assert (lock_id, unlock_id) == ("TRIAL#1", "TRIAL#2")
    # Make room: the unlock moves one position on, and a clinical event is forged in its place,
    # then every hash from there on is rewritten so that the seal itself is coherent.
    attacker.move("{events}", attacker.pos, unlock_at, unlock_at + 1)
    attacker.move("ledger_entries", "position", unlock_at, unlock_at + 1)
    originator, _, topic, state = attacker.event(rows[3][0])
    forged = edited(state, id="forged-cmv", value_iu_ml=150)
    attacker.sql(INSERT_EVENT, (originator, 998, topic, forged, unlock_at))
    attacker.sql(
        "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?)",
        (unlock_at, "forged-cmv", originator, b"", b"", b""),
    )
    attacker.reseal(unlock_at)
    attacker.close()
    code, out = cli(store_url, "--json", "verify")
    assert code == 1
    first_bad = json.loads(out)["first_bad"]
    assert (first_bad["position"], first_bad["event_id"]) == (unlock_at, "forged-cmv")
    assert first_bad["problem"].startswith("this event was sealed while the ledger was locked")
    # The rest of the store is coherent: the lock is the only thing verify can name.
    with snapshot(ledger) as snap:
        assert snap.event_count() == len(rows) + 1
