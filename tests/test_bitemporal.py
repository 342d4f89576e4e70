"""The read model's summaries answer every (as-of, known-at) pair as a full replay does (issue 14).

``status`` and ``endpoints`` look each participant up in the summaries kept by
the writes (:mod:`ledger.storage.summaries`).  Random trials are written batch
by batch through the ledger itself (screenings, enrollments, infusions, CMV
results, disease assessments, adverse events and updates, withdrawals, deaths,
corrections, voids, a protocol amendment), with the recorded time moving on,
standing still or even going back between batches; then at random as-of dates
and known-at moments (batch times, a microsecond either side, between, now)
the answer from the summaries must be the answer of a replay of every
participant's events, and ``rebuild`` must make summaries that answer alike
and that ``verify`` finds equal to the events.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.protocols import adopt, adopt_at_init
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import LedgerError
from ledger.domain.protocol import DEFAULT_PROTOCOL, parse_protocol
from projections.readmodel.check import check_read_model
from projections.readmodel.queries import Monitor
from projections.readmodel.timeline import rebuild
from tests import lines as L
from tests.builders import Clock

T0 = dt.datetime(2015, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY0 = dt.date(2014, 1, 6)
CODES = ("NFH-001", "NFH-002", "AMMS-003", "ZSH-004")
SHIPPED = DEFAULT_PROTOCOL.read_bytes()
# An amendment that moves every date the summaries depend on: second course, window, remission.
AMENDED = (
    SHIPPED.replace(b'version = "1.0"', b'version = "2.0"')
    .replace(b"second_course_from_day = 15", b"second_course_from_day = 10")
    .replace(b"window_days = 365", b"window_days = 40")
    .replace(b"min_gap_days = 5", b"min_gap_days = 2")
)


def _on(offset: int) -> str:
    return (DAY0 + dt.timedelta(days=offset)).isoformat()


@st.composite
def actions(draw: st.DrawFn) -> list[tuple[int, str, dict[str, Any]]]:
    """Batches to write: (seconds since the batch before, what, its lines or settings)."""
    steps: list[tuple[int, str, dict[str, Any]]] = []
    state: dict[str, str] = {}  # what each participant has been through so far
    for number in range(draw(st.integers(3, 24))):
        code = draw(st.sampled_from(CODES))
        if code not in state:
            kind = state[code] = "screen"
        elif state[code] == "screen":
            kind = state[code] = "treat"
        else:
            kind = draw(
                st.sampled_from(["cmv", "cmv", "cmv", "disease", "ae", "update", "end", "fix", "amend"])
            )
        step = draw(st.sampled_from([3600, 3600, 86_400, 0, -1800]))
        offset = draw(st.integers(0, 60))
        if kind == "screen":
            disease = draw(st.sampled_from(["infection", "disease"]))
            line = L.screening(code, id=f"{code}-scr", effective=_on(0), consent_date=_on(0))
            steps.append((step, kind, {"lines": [{**line, "refractory_cmv": disease}]}))
        elif kind == "treat":
            day1 = draw(st.integers(3, 12))
            lines = [
                L.enrollment(code, id=f"{code}-enr", effective=_on(2)),
                L.infusion(code, id=f"{code}-inf{number}", effective=_on(day1)),
            ]
            if draw(st.booleans()):
                second = draw(st.integers(day1 + 1, day1 + 30))
                lines.append(L.infusion(code, id=f"{code}-inf2-{number}", effective=_on(second), course=2))
            steps.append((step, kind, {"lines": lines}))
        elif kind == "cmv":
            results = draw(
                st.lists(st.sampled_from(["not_detected", "below_lloq", "quantified"]), max_size=4)
            )
            lines = [
                L.cmv(code, id=f"{code}-cmv{number}-{i}", effective=_on(offset + 3 * i), result=result)
                for i, result in enumerate(results)
            ]
            steps.append((step, kind, {"lines": lines}))
        elif kind == "disease":
            status = draw(st.sampled_from(["active", "resolved"]))
            line = L.disease(code, id=f"{code}-dis{number}", effective=_on(offset), status=status)
            steps.append((step, kind, {"lines": [line]}))
        elif kind == "ae":
            serious = draw(st.booleans())
            on = _on(offset)
            line = L.adverse_event(
                code,
                id=f"{code}-ae{number}",
                ae_id="AE-1",
                effective=on,
                serious=serious,
                criteria=["hospitalisation"] if serious else [],
                grade=3,
                aware_at=f"{on}T09:00:00+08:00",
            )
            steps.append((step, kind, {"lines": [line]}))
        elif kind == "update":
            serious = draw(st.booleans())
            line = L.ae_update(
                code,
                id=f"{code}-aeu{number}",
                effective=_on(offset + 5),
                serious=serious,
                criteria=["life_threatening"] if serious else [],
                resolved_date=_on(offset + 5),
            )
            steps.append((step, kind, {"lines": [line]}))
        elif kind == "end":
            maker = draw(st.sampled_from([L.withdrawal, L.death]))
            steps.append(
                (step, kind, {"lines": [maker(code, id=f"{code}-end{number}", effective=_on(offset + 20))]})
            )
        elif kind == "fix":
            steps.append(
                (
                    step,
                    kind,
                    {"void": draw(st.booleans()), "offset": offset, "pick": draw(st.integers(0, 99))},
                )
            )
        else:
            steps.append((step, kind, {"effective": _on(draw(st.integers(-10, 40)))}))
    return steps


def write(store: str, steps: list[tuple[int, str, dict[str, Any]]]) -> tuple[TrialLedger, list[dt.datetime]]:
    """Write the batches; refused ones store nothing.  The ledger and the moments batches were recorded."""
    clock = Clock(T0)
    ledger = TrialLedger(store, clock=clock)
    adopt_at_init(ledger, "dm")
    moments = [clock.now]
    stored: list[str] = []
    for step, kind, spec in steps:
        clock.now += dt.timedelta(seconds=step)
        try:
            if kind == "amend":
                effective = dt.date.fromisoformat(spec["effective"])
                adopt(ledger, "dm", AMENDED, parse_protocol(AMENDED, "amendment"), effective, "amendment 1")
            elif kind == "fix":
                if not stored:
                    continue
                target = stored[spec["pick"] % len(stored)]
                line = (
                    L.void(target)
                    if spec["void"]
                    else L.correction(target, {"effective": _on(spec["offset"])})
                )
                ledger.record(L.as_lines([line]), user="dm")
            else:
                receipt = ledger.record(L.as_lines(spec["lines"]), user="dm")
                stored += [i for i in receipt.stored if "-scr" not in i]
        except LedgerError:
            continue
        moments.append(clock.now)
    return ledger, moments


def answers(ledger: TrialLedger, as_of: dt.date, known_at: dt.datetime | None, *, replay: bool) -> str:
    monitor = Monitor(ledger)
    if replay:
        monitor.view.summarised = False
    both = {
        "status": monitor.status(as_of, known_at),
        "endpoints": monitor.endpoints(as_of, known_at),
        "one": monitor.status(as_of, known_at, "NFH-001"),
    }
    for answer in both.values():  # "now" is the moment each was asked
        answer["known_at"] = known_at
    return json.dumps(both, sort_keys=True, default=str)


def moments_around(moments: list[dt.datetime]) -> list[dt.datetime | None]:
    tick = dt.timedelta(microseconds=1)
    around = [
        m + delta for m in moments for delta in (-tick, dt.timedelta(0), tick, dt.timedelta(minutes=20))
    ]
    return [T0 - dt.timedelta(days=1), *around, None]


AS_OF = [DAY0 + dt.timedelta(days=offset) for offset in (-1, 0, 2, 5, 9, 14, 20, 33, 45, 61, 90, 400)]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    steps=actions(),
    picks=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 200)), min_size=6, max_size=12),
)
def test_summaries_answer_as_a_replay_at_random_pairs(
    tmp_path_factory: pytest.TempPathFactory, steps: list[Any], picks: list[tuple[int, int]]
) -> None:
    store = str(tmp_path_factory.mktemp("bitemporal") / "trial-ledger.db")
    ledger, moments = write(store, steps)
    known = moments_around(moments)
    pairs = [(AS_OF[a], known[k % len(known)]) for a, k in picks]
    for as_of, known_at in pairs:
        assert answers(ledger, as_of, known_at, replay=False) == answers(ledger, as_of, known_at, replay=True)
    assert check_read_model(ledger).ok
    before = [answers(ledger, as_of, known_at, replay=False) for as_of, known_at in pairs]
    rebuild(ledger)
    assert check_read_model(ledger).ok
    assert [answers(ledger, as_of, known_at, replay=False) for as_of, known_at in pairs] == before


def test_summaries_on_postgresql_answer_as_a_replay(pg_url: str) -> None:
    steps = [
        (
            3600,
            "screen",
            {"lines": [L.screening("NFH-001", id="NFH-001-scr", effective=_on(0), consent_date=_on(0))]},
        ),
        (
            3600,
            "treat",
            {"lines": [L.enrollment("NFH-001", effective=_on(2)), L.infusion("NFH-001", effective=_on(4))]},
        ),
        (0, "cmv", {"lines": [L.cmv("NFH-001", id="c1", effective=_on(8), result="not_detected")]}),
        (-60, "cmv", {"lines": [L.cmv("NFH-001", id="c2", effective=_on(14), result="below_lloq")]}),
        (3600, "amend", {"effective": _on(3)}),
        (3600, "fix", {"void": False, "offset": 20, "pick": 0}),
    ]
    ledger, moments = write(pg_url, steps)
    for as_of in AS_OF:
        for known_at in moments_around(moments):
            assert answers(ledger, as_of, known_at, replay=False) == answers(
                ledger, as_of, known_at, replay=True
            )
    assert check_read_model(ledger).ok


def test_an_amendment_recomputes_every_participant_it_judges(tmp_path: Path) -> None:
    """Adopting a version moves the window of everyone it judges, in the summaries at once."""
    clock = Clock(T0)
    ledger = TrialLedger(str(tmp_path / "trial-ledger.db"), clock=clock)
    adopt_at_init(ledger, "dm")
    ledger.record(L.as_lines(L.treated("NFH-001")), user="dm")
    clock.now += dt.timedelta(hours=1)
    as_of = dt.date(2014, 3, 1)  # day 52 after the infusion of 9 January 2014
    assert Monitor(ledger).status(as_of, None)["participants"][0]["status"] == "second_course_due"
    adopt(ledger, "dm", AMENDED, parse_protocol(AMENDED, "amendment"), dt.date(2014, 1, 1), "amendment 1")
    now = Monitor(ledger).status(as_of, None)
    assert (now["participants"][0]["status"], now["participants"][0]["protocol_version"]) == (
        "completed",
        "2.0",
    )
    before = Monitor(ledger).status(as_of, clock.now - dt.timedelta(minutes=1))
    assert before["participants"][0]["status"] == "second_course_due"
    monitor = Monitor(ledger)
    monitor.view.summarised = False
    assert monitor.status(as_of, None)["participants"] == now["participants"]
