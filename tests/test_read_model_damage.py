"""The read model is checked, not trusted (issue 11 item 8), on SQLite and PostgreSQL.

Each damage is done with raw SQL on a table the read model uses.  Then the read
commands run in a subprocess under a timeout, so a catch-up that loops fails the
test instead of hanging it: they exit 2 with one line saying to run ``rebuild``
(or answer correctly), ``verify`` exits 1 naming the first difference, and
``rebuild`` repairs it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cli import _read_model_finding as read_model_finding
from ledger.application import verification
from ledger.application.trial_ledger import TrialLedger
from ledger.application.verification import verify_ledger
from projections.readmodel.check import check_read_model
from projections.readmodel.timeline import REBUILD
from tests import lines as L

CONSOLE = str(Path(sys.executable).with_name("trial-ledger"))
TIMEOUT = 120  # seconds: far above a sound run, far below a hung CI job


def run(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One command in its own process, killed (and the test failed) if it does not end in time."""
    return subprocess.run(
        [CONSOLE, "--store", store, "--user", "dm", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "COLUMNS": "200"},
    )


def execute(store: str, *statements: str) -> None:
    """Raw SQL on the store, as an attacker with database access would run it."""
    if not store.startswith("postgres"):
        with sqlite3.connect(store) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    import psycopg

    url = urlsplit(store)
    schema = parse_qs(url.query)["schema"][0]
    with psycopg.connect(url._replace(query="").geturl(), autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        for statement in statements:
            conn.execute(statement)


TRACKING = "rm_tracking"  # one row per batch the view covers: the tracked position is the highest


def participants(count: int) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for number in range(1, count + 1):
        code = f"NFH-{number:03d}"
        lines += [*L.treated(code), L.cmv(code, id=f"c{number}", effective="2014-01-17", result="below_lloq")]
    return lines


@pytest.fixture
def projected(store_url: str) -> tuple[str, str]:
    """A store of three participants (12 events) whose read model is up to date, and its status."""
    TrialLedger(store_url).record(L.as_lines(participants(3)), user="dm")
    status = run(store_url, "--json", "status", "--as-of", "2014-06-30")
    assert status.returncode == 0, status.stderr
    return store_url, status.stdout


def damaged(damage: str) -> str:
    return f"error: read model: {damage}; {REBUILD}\n"


def assert_refused(store: str, damage: str) -> None:
    """``status`` and ``endpoints`` exit 2 with the one line naming the damage, in bounded time."""
    for command in ("status", "endpoints"):
        done = run(store, "--json", command, "--as-of", "2014-06-30")
        assert (done.returncode, done.stderr) == (2, damaged(damage)), done.stderr


def assert_answered(store: str, status: str) -> None:
    """``status`` answers as it did before the damage."""
    done = run(store, "--json", "status", "--as-of", "2014-06-30")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["participants"] == json.loads(status)["participants"]


def assert_verify_names(store: str, participant: str | None, position: int | None, difference: str) -> None:
    done = run(store, "--json", "verify")
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is False
    assert data["read_model"] == {
        "ok": False,
        "participant": participant,
        "position": position,
        "difference": difference,
    }
    assert data["first_bad"]["position"] == position


def assert_rebuild_repairs(store: str, status: str) -> None:
    rebuilt = run(store, "--json", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout) == {"events": 12}
    after = run(store, "--json", "status", "--as-of", "2014-06-30")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["participants"] == json.loads(status)["participants"]
    assert run(store, "verify").returncode == 0


def test_the_check_run_beside_the_seal_names_the_same_difference(
    projected: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a large ledger ``verify`` checks the read model in a process of its own (issue 14): same verdict."""
    store, _ = projected
    execute(store, "DELETE FROM rm_timeline WHERE position = 6")
    ledger = TrialLedger(store)
    after = verify_ledger(ledger, checks=[read_model_finding]).to_json()
    monkeypatch.setattr(verification, "BESIDE_FROM", 0)
    assert verify_ledger(ledger, checks=[read_model_finding]).to_json() == after
    assert after["read_model"]["position"] == 6


def test_a_deleted_row_is_refused_and_named_by_verify(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "DELETE FROM rm_timeline WHERE position = 6")
    assert_refused(store, "11 rows for the 12 events it tracks")
    assert_verify_names(store, "NFH-002", 6, "the event has no row in the read model")
    assert_rebuild_repairs(store, status)


def test_a_row_that_does_not_decode_is_refused_and_named_by_verify(
    projected: tuple[str, str], tmp_path: Path
) -> None:
    """``status`` answers from the summaries, which never read the row; what replays refuses it."""
    store, status = projected
    garbage = "'\\x00'::bytea" if store.startswith("postgres") else "X'00'"
    execute(store, f"UPDATE rm_timeline SET state = {garbage} WHERE position = 7")
    assert_answered(store, status)
    report = run(store, "report", "--out", str(tmp_path / "report"))
    assert (report.returncode, report.stderr) == (
        2,
        damaged("the row of NFH-002 at position 7 does not decode"),
    )
    assert_verify_names(store, "NFH-002", 7, "the row's content is not the event's")
    assert_rebuild_repairs(store, status)


def test_a_row_altered_into_another_well_formed_row_is_named_by_verify(projected: tuple[str, str]) -> None:
    store, status = projected
    # NFH-003's CMV result (position 12) becomes a copy of its infusion (position 11): well formed.
    copy = "SELECT state FROM rm_timeline WHERE position = 11"
    execute(store, f"UPDATE rm_timeline SET state = ({copy}) WHERE position = 12")
    assert_verify_names(store, "NFH-003", 12, "the row's content is not the event's")
    assert_rebuild_repairs(store, status)


def test_a_row_moved_to_another_participant_is_named_by_verify(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "UPDATE rm_timeline SET participant = 'NFH-003' WHERE position = 4")
    assert_verify_names(store, "NFH-001", 4, "the row names participant NFH-003")
    assert_rebuild_repairs(store, status)


def test_a_deleted_tracking_row_is_refused_not_looped(projected: tuple[str, str], tmp_path: Path) -> None:
    store, status = projected
    execute(store, f"DELETE FROM {TRACKING}")
    assert_refused(store, "a row at position 12, beyond the tracked position 0")
    report = run(store, "report", "--out", str(tmp_path / "report"))
    assert (report.returncode, report.stderr) == (
        2,
        damaged("a row at position 12, beyond the tracked position 0"),
    )
    assert_verify_names(store, "NFH-001", 1, "a row beyond the tracked position")
    assert_rebuild_repairs(store, status)


def test_tracking_set_back_is_refused(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, f"DELETE FROM {TRACKING}", f"INSERT INTO {TRACKING} VALUES (5)")
    assert_refused(store, "a row at position 12, beyond the tracked position 5")
    assert_verify_names(store, "NFH-002", 6, "a row beyond the tracked position")
    assert_rebuild_repairs(store, status)


def test_tracking_set_forward_within_the_ledger_is_refused(projected: tuple[str, str]) -> None:
    store, _ = projected
    TrialLedger(store).record(L.as_lines([L.screening("NFH-004")]), user="dm")
    # The view lags by one event (as a store an earlier version wrote, without summaries), then
    # claims to cover it.
    lag = ("DELETE FROM rm_timeline WHERE position = 13", f"DELETE FROM {TRACKING} WHERE position = 13")
    execute(store, *lag, "DROP TABLE rm_summary", "DROP TABLE rm_clock")
    assert run(store, "--json", "status", "--as-of", "2014-06-30").returncode == 0
    execute(store, f"INSERT INTO {TRACKING} VALUES (13)")
    assert_refused(store, "12 rows for the 13 events it tracks")
    assert_verify_names(store, "NFH-004", 13, "the event has no row in the read model")
    rebuilt = run(store, "--json", "rebuild")
    assert json.loads(rebuilt.stdout) == {"events": 13}
    assert check_read_model(TrialLedger(store)).ok


def test_tracking_set_beyond_the_ledger_is_refused(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, f"INSERT INTO {TRACKING} VALUES (99)")
    assert_refused(store, "tracked at position 99, beyond the ledger's 12 events")
    assert_verify_names(store, None, None, "tracked at position 99, beyond the ledger's 12 events")
    assert_rebuild_repairs(store, status)


def test_a_dropped_table_is_refused(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "DROP TABLE rm_timeline")
    assert_refused(store, "0 rows for the 12 events it tracks")
    assert_verify_names(store, "NFH-001", 1, "the event has no row in the read model")
    assert_rebuild_repairs(store, status)


def test_a_dropped_tracking_table_leaves_a_view_that_covers_nothing(projected: tuple[str, str]) -> None:
    """Without its tracking table the view claims nothing: reads answer from the events, as on a
    store an earlier version wrote, and ``rebuild`` makes it whole."""
    store, status = projected
    execute(store, f"DROP TABLE {TRACKING}")
    after = run(store, "--json", "status", "--as-of", "2014-06-30")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["participants"] == json.loads(status)["participants"]
    assert check_read_model(TrialLedger(store)).ok
    assert_rebuild_repairs(store, status)


def test_a_view_and_its_tracking_both_gone_are_answered_from_the_events(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "DROP TABLE rm_timeline", f"DELETE FROM {TRACKING}")
    after = run(store, "--json", "status", "--as-of", "2014-06-30")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["participants"] == json.loads(status)["participants"]
    assert check_read_model(TrialLedger(store)).ok


def test_two_status_at_once_catch_up_once(store_url: str) -> None:
    TrialLedger(store_url).record(L.as_lines(participants(40)), user="dm")
    command = [CONSOLE, "--store", store_url, "--json", "status", "--as-of", "2014-06-30"]
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [proc.communicate(timeout=TIMEOUT) for proc in running]
    assert [proc.returncode for proc in running] == [0, 0, 0], [err for _, err in outputs]
    answers = [json.loads(out)["participants"] for out, _ in outputs]
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) == 40
    assert check_read_model(TrialLedger(store_url)).ok


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8, 1.5])
def test_a_rebuild_killed_at_any_moment_leaves_a_read_model_that_catches_up(
    store_url: str, delay: float
) -> None:
    TrialLedger(store_url).record(L.as_lines(participants(200)), user="dm")
    assert run(store_url, "status").returncode == 0
    rebuilding = subprocess.Popen(
        [CONSOLE, "--store", store_url, "--json", "rebuild"], stdout=subprocess.DEVNULL
    )
    time.sleep(delay)
    rebuilding.send_signal(signal.SIGKILL)
    rebuilding.wait(timeout=TIMEOUT)
    after = run(store_url, "--json", "status", "--as-of", "2014-06-30")
    assert after.returncode == 0, after.stderr
    assert len(json.loads(after.stdout)["participants"]) == 200
    assert check_read_model(TrialLedger(store_url)).ok


def test_a_table_altered_out_of_shape_is_refused_and_made_anew_by_rebuild(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "DROP TABLE rm_timeline", "CREATE TABLE rm_timeline (x INTEGER)")
    done = run(store, "--json", "status", "--as-of", "2014-06-30")
    assert done.returncode == 2
    assert done.stderr.startswith("error: read model: its tables cannot be opened (")
    assert done.stderr.endswith(f"); {REBUILD}\n") and done.stderr.count("\n") == 1
    assert_rebuild_repairs(store, status)


def test_a_read_model_behind_the_ledger_is_not_a_difference(projected: tuple[str, str]) -> None:
    store, _ = projected
    TrialLedger(store).record(L.as_lines([L.screening("NFH-004")]), user="dm")
    assert check_read_model(TrialLedger(store)).ok
    assert run(store, "verify").returncode == 0


# -- the summaries (issue 14) -------------------------------------------------------------------


def test_a_deleted_summary_is_refused_and_named_by_verify(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "DELETE FROM rm_summary WHERE participant = 'NFH-002'")
    assert_refused(store, "2 summaries where its batches added 3")
    assert_verify_names(store, "NFH-002", 12, "no summary where the events make one")
    assert_rebuild_repairs(store, status)


def test_a_summary_that_does_not_decode_is_refused_and_named_by_verify(projected: tuple[str, str]) -> None:
    store, status = projected
    garbage = "'\\x00'::bytea" if store.startswith("postgres") else "X'00'"
    execute(store, f"UPDATE rm_summary SET steps = {garbage} WHERE participant = 'NFH-002'")
    assert_refused(store, "the summary of NFH-002 at or before 12 does not decode")
    assert_verify_names(store, "NFH-002", 12, "its summary is not what the events make")
    assert_rebuild_repairs(store, status)


def test_a_summary_altered_into_another_well_formed_one_is_named_by_verify(
    projected: tuple[str, str],
) -> None:
    """NFH-003 takes NFH-001's summary: well formed, wrong; ``status`` cannot tell, ``verify`` can."""
    store, status = projected
    copy = "SELECT steps FROM rm_summary WHERE participant = 'NFH-001'"
    execute(store, f"UPDATE rm_summary SET steps = ({copy}) WHERE participant = 'NFH-003'")
    assert_verify_names(store, "NFH-003", 12, "its summary is not what the events make")
    assert_rebuild_repairs(store, status)


def test_a_clock_row_altered_is_named_by_verify(projected: tuple[str, str]) -> None:
    store, status = projected
    execute(store, "UPDATE rm_clock SET recorded_at = recorded_at - 1, high = high - 1")
    assert_verify_names(store, None, 12, "its clock row is not what the events say")
    assert_rebuild_repairs(store, status)


def test_a_summary_beyond_the_clock_is_refused(projected: tuple[str, str]) -> None:
    store, status = projected
    copy = "SELECT participant, 99, steps FROM rm_summary WHERE participant = 'NFH-001'"
    execute(store, f"INSERT INTO rm_summary {copy}")
    assert_refused(store, "a summary at position 99, beyond the summarised position 12")
    assert_rebuild_repairs(store, status)


def test_dropped_summaries_are_answered_by_a_replay(projected: tuple[str, str]) -> None:
    """Without its summaries the view answers as a store of an earlier version does: by a replay."""
    store, status = projected
    execute(store, "DROP TABLE rm_summary")
    assert_answered(store, status)
    assert check_read_model(TrialLedger(store)).ok
    TrialLedger(store).record(L.as_lines([L.screening("NFH-004")]), user="dm")
    assert run(store, "--json", "status", "--as-of", "2014-06-30").returncode == 0
    rebuilt = run(store, "--json", "rebuild")
    assert json.loads(rebuilt.stdout) == {"events": 13}
    assert check_read_model(TrialLedger(store)).ok
