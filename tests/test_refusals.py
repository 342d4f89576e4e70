"""Every refused attempt is on record, during a lock too (issue 12, item 7).

A refusal names who tried (the acting login), what (the action) and why; it is
kept in the ``REFUSALS`` stream, which the lock does not block, and ``verify``
accepts it between a lock and its unlock.  On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application import access, signatures
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify_ledger
from ledger.domain.errors import Refused
from ledger.domain.events import ActionRefused
from tests import lines as L
from tests.staff import PASSPHRASE, staffed, store


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    return TrialLedger(store_url)


def refusals(ledger: TrialLedger) -> list[tuple[str, str | None, str, str]]:
    """(stream, user, action, reason) of every recorded refusal, in ledger order."""
    return [
        (e.participant, e.record.user, e.record.action, e.record.reason)
        for e in ledger.entries()
        if isinstance(e.record, ActionRefused)
    ]


def test_refusals_during_a_lock_are_recorded_and_verify_accepts_them(
    ledger: TrialLedger, tmp_path: Path
) -> None:
    keys = staffed(ledger, tmp_path)
    store(ledger, L.treated("NFH-001"))
    access.lock(ledger, "dm", "database lock for the primary analysis")
    attempts = [
        (lambda: access.unlock(ledger, "nfh.pi", "let me in"), "nfh.pi", "unlock", "may not unlock"),
        (lambda: store(ledger, [L.cmv("NFH-001")]), "nfh.nurse", "append CMVLoadMeasured", "locked since"),
        (
            lambda: store(ledger, [L.cmv("NFH-001")], user="monitor"),
            "monitor",
            "append CMVLoadMeasured",
            "may not",
        ),
        (
            lambda: signatures.sign(ledger, "nfh.pi", "NFH-001", "approved", keys["nfh.pi"], PASSPHRASE),
            "nfh.pi",
            "sign approved",
            "locked since",
        ),
    ]
    for attempt, *_ in attempts:
        with pytest.raises(Refused):
            attempt()
    recorded = refusals(ledger)
    assert [(stream, user, action) for stream, user, action, _ in recorded] == [
        ("REFUSALS", user, action) for _, user, action, _ in attempts
    ]
    assert all(why in reason for (*_, reason), (*_, why) in zip(recorded, attempts, strict=True))
    # Still locked: the refusals did not end the lock, and nothing clinical got in.
    assert access.lock_state(ledger.entries()).locked
    assert [e.record.type for e in ledger.entries() if e.participant == "NFH-001"][-1] == "MSCInfused"
    verdict = verify_ledger(ledger)
    assert verdict.ok, verdict.to_json()
    access.unlock(ledger, "dm", "analysis done")
    assert verify_ledger(ledger).ok


def test_a_refused_attempt_on_the_command_line_shows_in_the_audit_trail(
    store_url: str, tmp_path: Path
) -> None:
    staffed(TrialLedger(store_url), tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["--store", store_url, *args])
        return result.exit_code, result.stdout, result.stderr

    assert run("--user", "dm", "lock", "--reason", "interim analysis")[0] == 0
    code, _, err = run("--user", "nfh.nurse", "unlock", "--reason", "please")
    assert code == 3 and "nfh.nurse (site_staff) may not unlock the ledger" in err
    code, out, _ = run("--json", "audit")
    rows = [row for row in json.loads(out)["entries"] if row["type"] == "ActionRefused"]
    assert [(row["stream"], row["user"], row["values"]["action"]) for row in rows] == [
        ("REFUSALS", "nfh.nurse", "unlock")
    ]
    assert rows[0]["reason"] == "refused unlock: nfh.nurse (site_staff) may not unlock the ledger"
    code, out, _ = run("--json", "verify")
    assert code == 0 and json.loads(out)["ok"] is True
