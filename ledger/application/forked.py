"""Work of ``verify`` run in a process of its own, beside the seal's (issue 14: the second core).

``verify`` recomputes the seal in one process; its further checks (the
authorization replay, the read model) each read the events again and decode
them, and on a large PostgreSQL ledger the seal's first half can be recomputed
apart: work for another core.  :class:`Forked` runs such work in a child
process on a ledger of its own (:meth:`TrialLedger.reopening`: connections of
its own, never the parent's), and hands back its answer, or raises again the
exception it ended with.

The child starts as the read model's workers do (:func:`ledger.storage.workers.context`):
a fork of this process when it runs one thread (the SQLite store), else from a
fork server, since a database driver's threads must not be forked; what goes
to a fork server must pickle, and work that does not (a lambda) runs in the
calling process when its answer is asked for, as it does where no process can
be started.  Objects that exist at a fork are frozen out of the child's garbage
collector: it never touches what it inherits.
"""

from __future__ import annotations

import gc
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ledger.domain.errors import LedgerError
from ledger.storage import workers

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

T = TypeVar("T")

# What a child started from a fork server needs loaded to open a ledger and verify it.
PRELOAD = ["ledger.application.trial_ledger", "ledger.application.verification", "ledger.storage.postgres"]


class Forked(Generic[T]):
    """``work(ledger)`` running in a child process, on a ledger of its own; :meth:`result` waits for it."""

    def __init__(self, ledger: TrialLedger, work: Callable[[TrialLedger], T]) -> None:
        self._ledger = ledger
        self._work = work
        self._process: Any = None  # the child, while it runs
        self._answer: Any = None
        self._here = True  # the work runs in this process, when its result is asked for
        reopening = ledger.reopening()
        starting = workers.context(PRELOAD)
        if starting.get_start_method() != "fork" and not _pickles((reopening, work)):
            return
        answer, sender = starting.Pipe(duplex=False)
        # Not a daemon: the work may start processes of its own (the read model's workers do).
        process = starting.Process(target=_answer, args=(sender, reopening, work))
        gc.freeze()
        try:
            process.start()
        except OSError:  # no process to spare: the work runs here when asked for
            answer.close()
            return
        finally:
            gc.unfreeze()
            sender.close()
        self._process, self._answer, self._here = process, answer, False

    def result(self) -> T:
        """The work's result, or the exception it raised, raised again here (ask once)."""
        if self._here:
            return self._work(self._ledger)
        if self._process is None:
            raise LedgerError("verify: a check's answer was asked for after it was cancelled or given")
        try:
            data = self._answer.recv_bytes()
        except EOFError:
            data = b""
        finally:
            self._reap()
        if not data:
            raise LedgerError("verify: a check ended without an answer (its process was killed)")
        done, value = pickle.loads(data)
        if not done:
            raise value
        return value  # type: ignore[no-any-return]

    def cancel(self) -> None:
        """Stop the work (its answer is not wanted any more)."""
        self._here = False
        if self._process is not None:
            self._process.kill()
            self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._answer.close()
            self._process.join()
            self._process = None


def _pickles(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # a lambda, or a value that holds one
        return False
    return True


def _answer(sender: Any, reopening: Callable[[], TrialLedger], work: Callable[[TrialLedger], T]) -> None:
    """In the child: run ``work`` on a ledger of its own and send ``(done, value)``, pickled."""
    try:
        own = reopening()
        try:
            payload: tuple[bool, object] = (True, work(own))
        finally:
            own.close()
    except BaseException as exc:  # every ending is the parent's to raise
        payload = (False, exc)
    sender.send_bytes(_pickled(payload))


def _pickled(payload: tuple[bool, object]) -> bytes:
    """``payload`` pickled so that it unpickles, else a :class:`LedgerError` saying what it was.

    An exception is unpickled once to be sure: one whose class takes other
    arguments than its message would fail only in the parent.
    """
    done, value = payload
    try:
        data = pickle.dumps(payload)
        if not done:
            pickle.loads(data)
        return data
    except Exception:  # a value or an exception class that does not survive pickling
        return pickle.dumps((False, LedgerError(f"verify: {type(value).__name__}: {value}")))
