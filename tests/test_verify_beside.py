"""``verify``'s further checks run beside the seal, each in a process of its own (issue 14).

:class:`ledger.application.forked.Forked` forks the current process and runs one
check there on a ledger of its own; these tests hold it to what ``verify`` needs:
the check reads the same store on its own connections and leaves the parent's
alone (on PostgreSQL a child that closed an inherited connection would end the
parent's server session), its answer or its exception comes back, and a seal
that does not match stops every check at once, leaving no process behind.
"""

from __future__ import annotations

import os
import time

import pytest

from ledger.application import verification
from ledger.application.forked import Forked
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import Finding, Mismatch, verify_ledger
from ledger.domain.errors import Ineligible, InvalidInput, LedgerError
from tests import lines as L
from tests.test_tamper import Attacker, edited


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    ledger = TrialLedger(store_url)
    ledger.record(L.as_lines([*L.treated("NFH-001"), *L.treated("NFH-002")]), user="dm")
    return ledger


def no_child_left() -> bool:
    """Whether this process has no child process, running or unreaped."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_check_runs_in_another_process_on_connections_of_its_own(ledger: TrialLedger) -> None:
    size = ledger.recorder.max_notification_id()
    work = Forked(ledger, lambda own: (os.getpid(), own is ledger, own.recorder.max_notification_id()))
    pid, same, seen = work.result()
    assert pid != os.getpid() and not same and seen == size
    # The parent's own connections still answer, and the child is gone.
    assert ledger.recorder.max_notification_id() == size
    assert verify_ledger(ledger).ok
    assert no_child_left()


def test_what_a_check_raises_is_raised_again_in_the_parent(ledger: TrialLedger) -> None:
    def refuse(_: TrialLedger) -> None:
        raise InvalidInput("digest: size: must be a non-negative integer")

    with pytest.raises(InvalidInput, match="digest: size: must be a non-negative integer"):
        Forked(ledger, refuse).result()

    def not_picklable(_: TrialLedger) -> None:
        raise Ineligible("NFH-001", ["age"])  # its arguments do not rebuild it: it cannot come back as is

    with pytest.raises(LedgerError, match="Ineligible: NFH-001: not eligible for enrollment: age"):
        Forked(ledger, not_picklable).result()
    assert no_child_left()


def test_findings_of_checks_beside_the_seal_are_those_of_checks_after_it(
    ledger: TrialLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = Finding("extra", Mismatch(3, "NFH-001#3", "found by the check"), {"n": 1}, ("one line",))
    checks = [lambda _: None, lambda _: problem]
    after = verify_ledger(ledger, checks=checks)
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)
    beside = verify_ledger(ledger, checks=checks)
    assert beside == after and not beside.ok and beside.findings == (problem,)
    assert no_child_left()


def test_a_seal_that_does_not_match_stops_the_checks_beside_it(
    ledger: TrialLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attacker = Attacker(store_url)
    position, _ = attacker.rows()[3]
    attacker.set_state(position, edited(attacker.event(position)[3], user="mallory"))
    attacker.close()
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)

    def endless(_: TrialLedger) -> None:
        time.sleep(300)

    verdict = verify_ledger(ledger, checks=[endless])
    assert not verdict.sealed and verdict.first_bad.position == position  # type: ignore[union-attr]
    assert no_child_left()
