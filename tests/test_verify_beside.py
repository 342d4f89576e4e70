"""``verify``'s further checks run beside the seal, each in a process of its own (issue 14).

:class:`ledger.application.forked.Forked` starts a child (a fork, or from a fork
server when the process runs threads, as on PostgreSQL) and runs one check there
on a ledger of its own; these tests hold it to what ``verify`` needs: the check
reads the same store on its own connections and leaves the parent's alone, its
answer or its exception comes back, and a seal that does not match stops every
check at once, leaving no process behind.  The work given to a child is a
module-level function here, as a fork server needs; work that cannot be pickled
(a lambda) runs in the calling process.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from ledger.application import verification
from ledger.application.forked import Forked
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import Finding, Mismatch, verify_ledger
from ledger.domain.errors import Ineligible, InvalidInput, LedgerError
from ledger.storage import workers
from tests import lines as L
from tests.test_tamper import Attacker, edited

PROBLEM = Finding("extra", Mismatch(3, "NFH-001#3", "found by the check"), {"n": 1}, ("one line",))


@pytest.fixture
def ledger(store_url: str) -> TrialLedger:
    ledger = TrialLedger(store_url)
    ledger.record(L.as_lines([*L.treated("NFH-001"), *L.treated("NFH-002")]), user="dm")
    return ledger


def where(own: TrialLedger) -> tuple[int, int | None]:
    return os.getpid(), own.recorder.max_notification_id()


def refuse(_: TrialLedger) -> None:
    raise InvalidInput("digest: size: must be a non-negative integer")


def not_picklable(_: TrialLedger) -> None:
    raise Ineligible("NFH-001", ["age"])  # its arguments do not rebuild it: it cannot come back as is


def nothing(_: TrialLedger) -> Finding | None:
    return None


def problem(_: TrialLedger) -> Finding | None:
    return PROBLEM


def endless(_: TrialLedger) -> None:
    time.sleep(300)


def spreading(_: TrialLedger) -> int:
    """Work that starts processes of its own, as the read model's check does on a large ledger."""
    with ProcessPoolExecutor(1, mp_context=workers.context()) as pool:
        return pool.submit(os.getpid).result()


def test_a_check_runs_in_another_process_on_connections_of_its_own(ledger: TrialLedger) -> None:
    size = ledger.recorder.max_notification_id()
    pid, seen = Forked(ledger, where).result()
    assert pid != os.getpid() and seen == size
    # The parent's own connections still answer, and the child is gone.
    assert ledger.recorder.max_notification_id() == size
    assert verify_ledger(ledger).ok
    assert not multiprocessing.active_children()


def test_work_that_cannot_be_pickled_runs_here_where_a_fork_server_starts_the_children(
    ledger: TrialLedger,
) -> None:
    forks = workers.context().get_start_method() == "fork"  # this process runs one thread
    pid, _ = Forked(ledger, lambda own: where(own)).result()
    assert (pid != os.getpid()) == forks


def test_a_check_may_start_processes_of_its_own(ledger: TrialLedger) -> None:
    assert Forked(ledger, spreading).result() not in (os.getpid(), None)
    assert not multiprocessing.active_children()


def test_what_a_check_raises_is_raised_again_in_the_parent(ledger: TrialLedger) -> None:
    with pytest.raises(InvalidInput, match="digest: size: must be a non-negative integer"):
        Forked(ledger, refuse).result()
    with pytest.raises(LedgerError, match="Ineligible: NFH-001: not eligible for enrollment: age"):
        Forked(ledger, not_picklable).result()
    assert not multiprocessing.active_children()


def test_findings_of_checks_beside_the_seal_are_those_of_checks_after_it(
    ledger: TrialLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    after = verify_ledger(ledger, checks=[nothing, problem])
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)
    beside = verify_ledger(ledger, checks=[nothing, problem])
    assert beside == after and not beside.ok and beside.findings == (PROBLEM,)
    assert not multiprocessing.active_children()


def test_a_seal_that_does_not_match_stops_the_checks_beside_it(
    ledger: TrialLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attacker = Attacker(store_url)
    position, _ = attacker.rows()[3]
    attacker.set_state(position, edited(attacker.event(position)[3], user="mallory"))
    attacker.close()
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)
    verdict = verify_ledger(ledger, checks=[endless])
    assert not verdict.sealed and verdict.first_bad.position == position  # type: ignore[union-attr]
    assert not multiprocessing.active_children()
