"""Work spread over the machine's cores, for the read model's bulk computations (issue 14).

Summarising participants (:mod:`ledger.storage.summaries`: an import's
participants inside its transaction, every participant in ``rebuild`` and
``verify``) is pure computation on rows the process has already read, one
participant independent of the next.  :func:`spread` hands such items to a
pool of worker processes, a chunk at a time and a few chunks ahead, and gives
the results back in the items' order; the process that holds the database
connection keeps reading and writing meanwhile.  Below :data:`ENOUGH` units
of work it computes in-process: a pool costs a fraction of a second to start.

Workers are forks of the calling process when it runs a single thread (the
SQLite store: they never touch its connection, and leave without closing it),
else they come from a fork server (``multiprocessing``'s ``forkserver``), since a
database driver's threads must not be forked; as with every ``multiprocessing``
program, a script that runs the ledger in-process guards its entry point with
``if __name__ == "__main__"``.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import multiprocessing.context
    from concurrent.futures import Future

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

# Units of work (rows) from which the work is spread, a chunk sent to a worker holds, and how many
# chunks each worker has queued.
ENOUGH = 20_000
CHUNK = 4_000
AHEAD = 2
# What a worker process needs loaded before it forks from the server: the rules and the read model.
PRELOAD = ["ledger.storage.summaries", "projections.readmodel.summaries"]

_work: Callable[[Any, Any], Any] | None = None
_shared: Any = None


def workers() -> int:
    """How many processes to spread over: the cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


def spread(work: Callable[[S, T], R], shared: S, items: Iterable[T], size: Callable[[T], int]) -> Iterator[R]:
    """``work(shared, item)`` of every item, in order; in worker processes when there is enough to do.

    ``work`` is a module-level function and ``shared`` and the items can be
    pickled; ``shared`` goes to each worker once.  ``size`` weighs an item (its
    rows).  An exception raised by ``work`` is raised here.
    """
    items = iter(items)
    head = next(_chunks(items, size, ENOUGH), [])  # the rest stays in ``items``
    if sum(map(size, head)) < ENOUGH or workers() < 2:
        for item in chain(head, items):
            yield work(shared, item)
        return
    from concurrent.futures import ProcessPoolExecutor  # loaded only when there is work to spread

    count, starting = workers(), context()
    with ProcessPoolExecutor(count, mp_context=starting, initializer=_start, initargs=(work, shared)) as pool:
        pending: deque[Future[list[R]]] = deque()
        for chunk in _chunks(chain(head, items), size, CHUNK):
            pending.append(pool.submit(_run, chunk))
            if len(pending) >= count * AHEAD:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def context(preload: Iterable[str] = ()) -> multiprocessing.context.BaseContext:
    """How to start workers: a fork of this process when it runs one thread (fast, nothing to load
    again), else from a fork server (a database driver's threads must not be forked), which loads
    :data:`PRELOAD` and ``preload`` when it starts."""
    import multiprocessing

    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    server = multiprocessing.get_context("forkserver")
    server.set_forkserver_preload([*PRELOAD, *preload])
    return server


def _chunks(items: Iterator[T], size: Callable[[T], int], weight: int) -> Iterator[list[T]]:
    """``items`` in lists of about ``weight`` units of work, each taken from ``items`` only as needed."""
    chunk: list[T] = []
    held = 0
    for item in items:
        chunk.append(item)
        held += size(item)
        if held >= weight:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _start(work: Callable[[Any, Any], Any], shared: Any) -> None:
    global _work, _shared
    _work, _shared = work, shared


def _run(chunk: list[Any]) -> list[Any]:
    assert _work is not None
    return [_work(_shared, item) for item in chunk]
