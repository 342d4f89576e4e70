"""Work of ``verify`` run in a process of its own, beside the seal's (issue 14: the second core).

``verify`` recomputes the seal in one process; its further checks (the
authorization replay, the read model) each read the events again and decode
them, and on a large PostgreSQL ledger the seal's first half can be recomputed
apart: work for another core.  :class:`Forked` runs such work in a child
forked from the current process, on a ledger of its own
(:meth:`TrialLedger.reopened`: connections of its own, never the parent's), and
hands back its answer, or re-raises the exception it ended with.

The child is a plain ``os.fork``: it starts at once with every module already
imported, whatever the store.  It never touches what it inherits from the
parent (connections, files, the terminal) and ends with ``os._exit``, so no
inherited object is finalised (a finalised connection would say goodbye to
the parent's server session); objects that exist at the fork are frozen out of
the child's garbage collector for the same reason.  Where ``os.fork`` does not
exist, the work runs in the calling process when its answer is asked for.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from ledger.domain.errors import LedgerError

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

T = TypeVar("T")

CAN_FORK = hasattr(os, "fork")


class Forked(Generic[T]):
    """``work(ledger)`` running in a child process, on a ledger of its own; :meth:`result` waits for it."""

    def __init__(self, ledger: TrialLedger, work: Callable[[TrialLedger], T]) -> None:
        self._ledger = ledger
        self._work = work
        self._pid: int | None = None  # the child's, while it runs
        self._answer = -1
        self._here = True  # the work runs in this process, when its result is asked for
        if not CAN_FORK:
            return
        answer, sender = os.pipe()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:  # no process to spare: the work runs here when asked for
            gc.unfreeze()
            os.close(answer)
            os.close(sender)
            return
        if pid == 0:  # the child: it never returns from here
            os.close(answer)
            _answer_and_exit(sender, ledger, work)
        gc.unfreeze()
        os.close(sender)
        self._pid, self._answer, self._here = pid, answer, False

    def result(self) -> T:
        """The work's result, or the exception it raised, raised again here (ask once)."""
        if self._here:
            return self._work(self._ledger)
        if self._pid is None:
            raise LedgerError("verify: a check's answer was asked for after it was cancelled or given")
        data = bytearray()
        try:
            while chunk := os.read(self._answer, 1 << 16):
                data += chunk
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
        if self._pid is not None:
            os.kill(self._pid, signal.SIGKILL)  # not reaped yet: the id is still the child's
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            os.close(self._answer)
            os.waitpid(self._pid, 0)
            self._pid = None


def _answer_and_exit(sender: int, ledger: TrialLedger, work: Callable[[TrialLedger], T]) -> None:
    """In the child: run ``work`` on a ledger of its own, send ``(done, value)`` pickled, exit."""
    try:
        try:
            own = ledger.reopened()
            try:
                payload: tuple[bool, object] = (True, work(own))
            finally:
                own.close()
        except BaseException as exc:  # every ending is the parent's to raise
            payload = (False, exc)
        data = _pickled(payload)
        view = memoryview(data)
        while view:
            view = view[os.write(sender, view) :]
    finally:
        os._exit(0)


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
