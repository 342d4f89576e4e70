"""The streamed import (issue 14, goal 2): staged on disk, checked a group of participants at a time.

Whatever the grouping, an import stores what one batch held in memory stores:
the same events in the same order, the same receipt; and it stays all or
nothing, naming every bad line, whichever group a line falls in.  Each test runs
on SQLite and PostgreSQL, with groups of one participant so that every line
crosses a group boundary.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

import ledger.application.trial_ledger as application
from ledger.application.importer import import_lines
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput
from tests import lines as L

USER = "nfh.chen"


@pytest.fixture(autouse=True)
def tiny_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(application, "STAGED_GROUP_LINES", 1)


def _import(ledger: TrialLedger, dicts: list[dict[str, Any]]) -> application.Receipt:
    return import_lines(ledger, io.BytesIO(L.jsonl(dicts).encode()), user=USER)


def _stored(ledger: TrialLedger) -> list[tuple[int, str, str]]:
    return [(e.position, e.participant, e.record.id or "") for e in ledger.entries()]


TRIAL = [
    *L.treated("NFH-002"),
    L.cmv("NFH-001", id="late-cmv", effective="2014-01-20"),  # before its participant's screening line
    *L.treated("NFH-001"),
    L.correction("NFH-002-enr", {"weight_kg": 70}, id="fix-2"),
    *L.treated("AMMS-001"),
    L.void("late-cmv", id="void-1"),
    L.cmv("NFH-002", effective="2014-01-21"),  # no client id: the ledger gives one
]


def test_a_streamed_import_stores_what_one_batch_stores(store_url: str, tmp_path: Any) -> None:
    streamed = TrialLedger(store_url)
    receipt = _import(streamed, TRIAL)
    batch = TrialLedger(str(tmp_path / "batch.db"))
    expected = batch.record(L.as_lines(TRIAL), user=USER)
    assert receipt.stored == expected.stored
    assert _stored(streamed) == _stored(batch)
    again = _import(streamed, TRIAL[:-1])
    assert again.stored == [] and sorted(again.skipped) == sorted(i for i in expected.stored if "#" not in i)


def test_corrections_find_their_targets_in_the_ledger_and_in_the_file(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    _import(ledger, L.treated("NFH-001"))
    receipt = _import(
        ledger,
        [
            L.correction("NFH-001-enr", {"weight_kg": 64}, id="fix-stored"),
            L.correction("NFH-002-enr", {"weight_kg": 66}, id="fix-in-file"),
            *L.treated("NFH-002"),
        ],
    )
    assert {"fix-stored", "fix-in-file"} <= set(receipt.stored)


def test_every_bad_line_of_every_group_is_named_and_nothing_is_stored(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    bad = [
        *L.treated("NFH-001"),
        L.infusion("NFH-001", id="again"),  # course 1 twice
        *L.treated("NFH-002"),
        L.cmv("NFH-002", id="NFH-001-scr"),  # another participant's id
        L.correction("nowhere", {"weight_kg": 60}),
    ]
    with pytest.raises(InvalidInput) as refused:
        _import(ledger, bad)
    problems = "\n".join(refused.value.problems)
    assert "line 4: NFH-001: course: course 1 already recorded" in problems
    assert "line 8: id: NFH-001-scr is already stored with different content" in problems
    assert "line 9: target: no event nowhere in the ledger" in problems
    assert _stored(ledger) == []
