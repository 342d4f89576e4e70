"""The site command line (SPEC section 6): exit codes, messages, JSON, and whole-file imports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from ledger.application.trial_ledger import TrialLedger
from ledger.simulation.demo import generate_trial, write_jsonl
from tests import lines as L


def run(store: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--store", store, "--user", "nfh.chen", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def count(store: str) -> int:
    ledger = TrialLedger(store)
    return ledger.recorder.max_notification_id() or 0


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "site.db")


SCREEN = [
    "screen",
    "--participant",
    "NFH-001",
    "--site",
    "NFH",
    "--effective",
    "2014-01-06",
    "--age-years",
    "42",
    "--sex",
    "F",
    "--refractory-cmv",
    "infection",
    "--consent-date",
    "2014-01-05",
    "--consent-by",
    "participant",
    "--hr",
    "78",
    "--rr",
    "16",
    "--sbp",
    "118",
    "--dbp",
    "76",
]


def test_write_commands_store_and_print_ids(store: str) -> None:
    assert run(store, *SCREEN)[:2] == (0, "stored NFH-001#1\n")
    code, out, _ = run(
        store,
        "--json",
        "enroll",
        "--participant",
        "NFH-001",
        "--effective",
        "2014-01-08",
        "--weight-kg",
        "61",
    )
    assert code == 0 and json.loads(out) == {"stored": ["NFH-001#2"], "skipped": []}
    code, out, _ = run(
        store,
        "ae",
        "--participant",
        "NFH-001",
        "--effective",
        "2014-01-09",
        "--ae-id",
        "1",
        "--term",
        "Rigors",
        "--category",
        "infusion_reaction",
        "--grade",
        "3",
        "--serious",
        "true",
        "--criteria",
        "hospitalisation,important_medical_event",
        "--causality",
        "probable",
        "--aware-at",
        "2014-01-09T10:00:00+08:00",
    )
    assert code == 0, out
    (record,) = [e.record for e in TrialLedger(store).entries() if e.record.type == "AdverseEventReported"]
    assert record.criteria == ["hospitalisation", "important_medical_event"]
    assert record.user == "nfh.chen" and record.site == "NFH"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["cmv", "--participant", "NFH-001", "--effective", "2014-13-01"], "effective:"),
        (
            [
                "infuse",
                "--participant",
                "NFH-001",
                "--effective",
                "2014-01-09",
                "--course",
                "1",
                "--cells-per-kg",
                "lots",
            ],
            "cells_per_kg: expected `float`",
        ),
        (["enroll", "--participant", "NFH-001", "--effective", "2014-01-08"], "weight_kg: required"),
        (
            ["correct", "--target", "NFH-001#1", "--changes", "{not json", "--reason", "x"],
            "changes: not a JSON",
        ),
        (["correct", "--target", "NFH-001#1", "--changes", '{"hr": "fast"}', "--reason", "x"], "hr"),
        (["void", "--target", "NFH-001#9", "--reason", "x"], "no event NFH-001#9"),
        (["death", "--participant", "NFH-002", "--effective", "2014-02-01"], "not screened"),
    ],
)
def test_bad_input_exits_2_naming_the_field_and_stores_nothing(
    store: str, args: list[str], words: str
) -> None:
    run(store, *SCREEN)
    code, out, err = run(store, *args)
    assert code == 2
    assert words in err, err
    assert "Traceback" not in out + err
    assert count(store) == 1


def test_ineligible_enrollment_exits_3_and_the_refusal_is_recorded(store: str) -> None:
    screen = [*SCREEN]
    screen[screen.index("--hr") + 1] = "130"
    run(store, *screen)
    code, out, err = run(
        store,
        "--json",
        "enroll",
        "--participant",
        "NFH-001",
        "--effective",
        "2014-01-08",
        "--weight-kg",
        "60",
    )
    assert code == 3
    assert "hr: 130 /min at screening, outside 60-100" in err
    assert json.loads(out)["problems"]
    assert [e.record.type for e in TrialLedger(store).entries()] == [
        "ParticipantScreened",
        "EnrollmentRefused",
    ]
    code, _, _ = run(
        store,
        "enroll",
        "--participant",
        "NFH-001",
        "--effective",
        "2014-01-08",
        "--weight-kg",
        "60",
        "--deviation",
        "enrolled under protocol waiver 2014-02",
    )
    assert code == 0


def test_a_generated_trial_imports_once_and_a_second_import_adds_nothing(store: str, tmp_path: Path) -> None:
    path = tmp_path / "trial.jsonl"
    lines = generate_trial(120, seed=11)
    write_jsonl(lines, path)
    code, out, err = run(store, "--json", "import", str(path))
    assert code == 0, err
    assert len(json.loads(out)["stored"]) == len(lines) > 2000
    code, out, _ = run(store, "--json", "import", str(path))
    assert code == 0
    assert json.loads(out)["stored"] == [] and len(json.loads(out)["skipped"]) == len(lines)
    assert count(store) == len(lines)


def test_an_import_with_bad_lines_names_each_line_and_stores_nothing(store: str) -> None:
    good = L.jsonl(L.treated())
    bad = (
        good
        + '{"type": "CMVLoadMeasured", "participant": "NFH-001"}\nnot json\n'
        + L.jsonl([L.cmv(result="not_detected", value_iu_ml=30)])
    )
    code, _, err = run(store, "import", "-", stdin=bad)
    assert code == 2
    assert "line 4: effective: required field is missing" in err
    assert "line 5: not a JSON object" in err
    assert "line 6: value_iu_ml: is only allowed" in err
    assert count(store) == 0


def test_an_import_with_an_ineligible_enrollment_exits_3_naming_line_and_criteria(store: str) -> None:
    text = L.jsonl([*L.treated("NFH-001"), L.screening("NFH-002", age_years=12), L.enrollment("NFH-002")])
    code, _, err = run(store, "import", "-", stdin=text)
    assert code == 3
    assert "line 5" in err and "age: 12 years" in err
    assert count(store) == 0


def test_global_options_come_from_the_environment(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAL_LEDGER_STORE", store)
    monkeypatch.setenv("TRIAL_LEDGER_USER", "zsh.wu")
    result = CliRunner().invoke(main, ["import", "-"], input=L.jsonl(L.treated("ZSH-001")))
    assert result.exit_code == 0, result.output
    assert {e.record.user for e in TrialLedger(store).entries()} == {"zsh.wu"}
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0 and "NFH-MSC-CMV-2014" in result.output.replace("\n", "")
