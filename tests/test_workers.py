"""Bulk summaries spread over the cores give what one process gives (issue 14, ``ledger.storage.workers``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ledger.application.trial_ledger import TrialLedger
from ledger.storage import workers
from ledger.storage.workers import spread
from projections.readmodel.check import check_read_model
from projections.readmodel.queries import Monitor
from projections.readmodel.timeline import open_view, rebuild
from tests.staff import generated


def square_plus(offset: int, item: int) -> int:
    if item < 0:
        raise ValueError(f"no square of {item}")
    return item * item + offset


@pytest.fixture
def small_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spread from the first few units of work, in small chunks, so tests reach the worker processes."""
    monkeypatch.setattr(workers, "ENOUGH", 3)
    monkeypatch.setattr(workers, "CHUNK", 2)


@pytest.mark.usefixtures("small_pool")
@pytest.mark.parametrize("threads", [False, True], ids=["forked", "fork server"])
def test_results_come_back_in_order_from_the_workers(threads: bool) -> None:
    done = threading.Event()
    other = threading.Thread(target=done.wait) if threads else None
    if other is not None:
        other.start()
    try:
        assert workers.workers() >= 2
        assert list(spread(square_plus, 1, range(50), lambda _: 1)) == [n * n + 1 for n in range(50)]
    finally:
        done.set()
        if other is not None:
            other.join()


@pytest.mark.usefixtures("small_pool")
def test_a_workers_error_is_raised_where_the_results_are_read() -> None:
    with pytest.raises(ValueError, match="no square of -1"):
        list(spread(square_plus, 0, [1, 2, 3, 4, -1, 5], lambda _: 1))


def test_little_work_stays_in_this_process() -> None:
    assert list(spread(square_plus, 0, [2, 3], lambda _: 1)) == [4, 9]


def test_an_import_a_rebuild_and_a_verify_spread_over_workers_find_what_one_process_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "trial-ledger.db")
    ledger = TrialLedger(store)
    monkeypatch.setattr(workers, "ENOUGH", 50)
    monkeypatch.setattr(workers, "CHUNK", 40)
    generated(ledger, 30)  # the import's summaries, from the workers
    spread_out = list(open_view(ledger).summary_rows())
    assert len(spread_out) > 30
    answer = Monitor(ledger).endpoints(ledger.clock().date(), None)
    monkeypatch.setattr(workers, "ENOUGH", 10**9)
    rebuild(ledger)  # in this process
    assert list(open_view(ledger).summary_rows()) == spread_out
    monkeypatch.setattr(workers, "ENOUGH", 50)
    rebuild(ledger)  # from the workers again
    assert list(open_view(ledger).summary_rows()) == spread_out
    assert Monitor(ledger).endpoints(ledger.clock().date(), None)["primary"] == answer["primary"]
    assert check_read_model(ledger).ok
