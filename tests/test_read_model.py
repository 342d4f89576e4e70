"""The read model on real stores: incremental equals rebuilt, and ``--known-at`` is exact.

SPEC section 4: the state computed at ``--known-at T`` must equal the state
computed from a store that holds only the events recorded by T.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.protocol import DEFAULT_PROTOCOL, load_protocol
from projections.readmodel.check import check_read_model
from projections.readmodel.queries import Monitor
from projections.readmodel.timeline import CurrentTimelines, catch_up, open_view, rebuild
from tests import lines as L
from tests.builders import Clock

T0 = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)


def test_the_view_kept_by_the_writes_equals_a_rebuild(store_url: str) -> None:
    ledger = TrialLedger(store_url)
    view = open_view(ledger)
    ledger.record(L.as_lines(L.treated("NFH-001")), user="u")
    assert catch_up(ledger, view) == 0  # the write added its rows: nothing left for a reader
    ledger.record(L.as_lines([L.cmv(id="c1"), *L.treated("ZSH-001")]), user="u")
    ledger.record(L.as_lines([L.correction("c1", {"value_iu_ml": 99})]), user="u")
    kept = list(view.rows())
    assert rebuild(ledger) == 8
    assert list(view.rows()) == kept
    assert [row[1] for row in kept] == [1, 2, 3, 4, 8, 5, 6, 7]


cmv_results = st.sampled_from(["not_detected", "below_lloq", "quantified", "above_uloq"])


@st.composite
def histories(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Batches of lines, each recorded one hour after the previous one."""
    batches: list[list[dict[str, Any]]] = [L.treated("NFH-001")]
    results: list[str] = []
    for n in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["cmv", "cmv", "cmv", "correct", "void"]))
        if action == "cmv" or not results:
            result = draw(cmv_results)
            day = dt.date(2014, 1, 9) + dt.timedelta(days=draw(st.integers(0, 40)))
            line = L.cmv(id=f"c{n}", effective=day.isoformat(), result=result)
            if result == "quantified":
                line["value_iu_ml"] = 1500
            results.append(f"c{n}")
            batches.append([line])
        elif action == "correct":
            target = draw(st.sampled_from(results))
            flip = draw(cmv_results)
            changes: dict[str, Any] = {"result": flip, "value_iu_ml": 800 if flip == "quantified" else None}
            batches.append([L.correction(target, changes, id=f"fix{n}")])
        else:
            batches.append([L.void(results.pop(draw(st.integers(0, len(results) - 1))), id=f"void{n}")])
    return batches


def record_batches(path: Path, batches: list[list[dict[str, Any]]]) -> TrialLedger:
    clock = Clock(T0)
    ledger = TrialLedger(str(path), clock=clock)
    for number, batch in enumerate(batches):
        clock.now = T0 + dt.timedelta(hours=number)
        ledger.record(L.as_lines(batch), user="u")
    return ledger


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=histories(), cut=st.integers(0, 9), as_of_day=st.integers(0, 60))
def test_known_at_equals_a_store_holding_only_what_was_recorded_by_then(
    tmp_path: Path, batches: list[list[dict[str, Any]]], cut: int, as_of_day: int
) -> None:
    run = tmp_path / uuid.uuid4().hex
    run.mkdir()
    cut = min(cut, len(batches) - 1)
    known_at = T0 + dt.timedelta(hours=cut, minutes=30)
    as_of = dt.date(2014, 1, 9) + dt.timedelta(days=as_of_day)
    full = record_batches(run / "full.db", batches)
    prefix = record_batches(run / "prefix.db", batches[: cut + 1])
    then = Monitor(full)
    now = Monitor(prefix)
    assert then.status(as_of, known_at)["participants"] == now.status(as_of, None)["participants"]
    past, present = then.endpoints(as_of, known_at), now.endpoints(as_of, None)
    assert {k: v for k, v in past.items() if k != "known_at"} == {
        k: v for k, v in present.items() if k != "known_at"
    }


SHIPPED_SHA = hashlib.sha256(DEFAULT_PROTOCOL.read_bytes()).hexdigest()


def test_status_and_endpoints_json_follow_the_spec(tmp_path: Path) -> None:
    store = str(tmp_path / "cli.db")
    ledger = TrialLedger(store)
    ledger.record(
        L.as_lines(
            [
                *L.treated("NFH-001"),
                L.cmv(effective="2014-01-12", result="not_detected"),
                L.cmv(effective="2014-01-17", result="below_lloq"),
                L.screening("AMMS-001", hr=130),
            ]
        ),
        user="u",
    )
    runner = CliRunner()
    status = runner.invoke(main, ["--store", store, "--json", "status", "--as-of", "2014-06-30"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    # The SPEC's keys, then the protocol versions that judged the participants (SPEC section 2).
    assert list(data) == ["as_of", "known_at", "participants", "protocol_versions"]
    assert data["as_of"] == "2014-06-30"
    shipped = load_protocol()
    assert data["protocol_versions"] == [
        {"version": shipped.version, "effective": "0001-01-01", "sha256": SHIPPED_SHA}
    ]
    assert [row.pop("protocol_version") for row in data["participants"]] == [shipped.version] * 2
    assert data["participants"] == [
        {
            "participant": "AMMS-001",
            "site": "AMMS",
            "status": "screen_failed",
            "courses": 0,
            "first_infusion": None,
            "cr_date": None,
            "flags": [],
        },
        {
            "participant": "NFH-001",
            "site": "NFH",
            "status": "complete_remission",
            "courses": 1,
            "first_infusion": "2014-01-09",
            "cr_date": "2014-01-17",
            "flags": [],
        },
    ]
    # Global options may also follow the command name.
    endpoints = runner.invoke(main, ["endpoints", "--as-of", "2014-06-30", "--store", store, "--json"])
    assert endpoints.exit_code == 0, endpoints.output
    result = json.loads(endpoints.output)
    assert list(result) == [
        "as_of",
        "known_at",
        "primary",
        "primary_itt",
        "secondary",
        "protocol_versions",
        "lock",
    ]
    assert result["protocol_versions"] == data["protocol_versions"]
    assert result["lock"] == {"locked": False, "since": None, "by": None, "reason": None}
    assert result["primary"] == {
        "population": "mITT",
        "n": 1,
        "N": 1,
        "percent": 100.0,
        "ci95": [2.5, 100.0],
        "ongoing": 0,
    }
    assert result["primary_itt"]["population"] == "ITT"
    assert len(result["secondary"]["by_category"]) == 10
    before = runner.invoke(main, ["--store", store, "--json", "status", "--known-at", "2000-01-01T00:00:00Z"])
    assert json.loads(before.output)["participants"] == []
    naive = runner.invoke(main, ["--store", store, "status", "--known-at", "2015-01-01T00:00:00"])
    assert naive.exit_code == 2 and "offset" in naive.output


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=histories(), lag=st.integers(0, 9))
def test_a_view_lagging_anywhere_reads_as_the_whole_view(
    tmp_path: Path, batches: list[list[dict[str, Any]]], lag: int
) -> None:
    """A view that stopped at any batch (a store an earlier version wrote) reads as the current one."""
    ledger = TrialLedger(str(tmp_path / f"{uuid.uuid4().hex}.db"))
    for number, batch in enumerate(batches):
        if number == lag:
            lagging = (list(open_view(ledger).rows()), ledger.recorder.max_notification_id() or 0)
        ledger.record(L.as_lines(batch), user="u")
    whole = list(CurrentTimelines(ledger).rows())
    assert len(whole) == sum(len(batch) for batch in batches)
    if lag < len(batches):
        view = open_view(ledger)
        view.remake()
        rows, tracked = lagging
        if rows:
            view.append(rows, tracked)
        assert list(CurrentTimelines(ledger).rows()) == whole
        assert check_read_model(ledger).ok
    rebuild(ledger)
    assert list(open_view(ledger).rows()) == whole


def test_a_study_protocol_file_changes_the_rules(tmp_path: Path) -> None:
    from ledger.domain.protocol import DEFAULT_PROTOCOL

    custom = tmp_path / "paediatric.toml"
    custom.write_text(DEFAULT_PROTOCOL.read_text().replace("age_min = 14", "age_min = 10"))
    store = str(tmp_path / "p.db")
    young = L.jsonl([L.screening(age_years=12), L.enrollment()])
    runner = CliRunner()
    refused = runner.invoke(main, ["--store", store, "--user", "u", "import", "-"], input=young)
    assert refused.exit_code == 3 and "age: 12 years" in refused.stderr
    accepted = runner.invoke(
        main, ["--store", store, "--user", "u", "--protocol", str(custom), "import", "-"], input=young
    )
    assert accepted.exit_code == 0, accepted.output
