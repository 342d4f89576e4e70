"""Text is text (issue 11; SPEC section 6): control characters refused at the edge, never acting on output.

Free text (``lot``, ``assay``, ``organ``, ``term``, ``cause``, ``reason``,
``deviation``, ...) may hold tab and newline and no other control character;
every other text field (codes and ids) holds none at all.  Outputs never let a
stored value act: terminals get control characters escaped, SDTM cells never
run as spreadsheet formulas, ODM stays XML 1.0.  A file may start with a UTF-8
byte-order mark.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from cli import main
from ledger.domain.events import FREE_TEXT, RECORD_TYPES, STORED_TYPES, Text, convert
from ledger.exchange.sdtm import spreadsheet_cell
from projections.presentation.render import status_view
from tests import lines as L

USER = "nfh.chen"
# Every control character a field may not hold: C0 but tab and newline, DEL, C1.
FORBIDDEN = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]
STORED = [
    *L.treated(),
    L.cmv(id="NFH-001-cmv"),
    L.adverse_event(id="NFH-001-ae"),
]
# (line builder, field) for every text field a line may carry: free text and codes.
TEXT_FIELDS: list[tuple[Callable[[], dict[str, Any]], str]] = [
    (lambda: L.screening("NFH-002"), "participant"),
    (lambda: L.screening("NFH-002"), "site"),
    (lambda: L.screening("NFH-002"), "id"),
    (lambda: L.screening("NFH-002"), "user"),
    (lambda: L.enrollment("NFH-001"), "deviation"),
    (lambda: L.infusion("NFH-001", course=2, effective="2014-01-30"), "lot"),
    (L.cmv, "assay"),
    (L.disease, "organ"),
    (lambda: L.adverse_event(ae_id="AE-2"), "term"),
    (lambda: L.adverse_event(), "ae_id"),
    (L.withdrawal, "reason"),
    (L.death, "cause"),
    (lambda: L.correction("NFH-001-cmv", {"assay": "COBAS"}), "reason"),
    (lambda: L.correction("NFH-001-cmv", {"assay": "COBAS"}), "target"),
    (lambda: L.void("NFH-001-cmv"), "reason"),
]
DISEASE = ["disease", "--participant", "NFH-001", "--effective", "2014-01-20", "--status", "active"]
FREE = {"deviation", "lot", "assay", "organ", "term", "reason", "cause"}


def _text_with_control(draw: st.DrawFn, limit: int) -> str:
    before = draw(st.text(max_size=limit // 2))
    after = draw(st.text(max_size=limit // 2))
    return before + draw(st.sampled_from(FORBIDDEN)) + after


@st.composite
def bad_text(draw: st.DrawFn) -> str:
    return _text_with_control(draw, 40)


def invoke(url: str, *args: str, stdin: str | bytes | None = None) -> Any:
    return CliRunner().invoke(main, [*args, "--store", url, "--user", USER], input=stdin)


def digest(url: str) -> str:
    result = invoke(url, "digest", "--json")
    assert result.exit_code == 0, result.output
    return str(result.stdout)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = str(tmp_path_factory.mktemp("text") / "store.db")
    result = invoke(url, "import", "-", stdin=L.jsonl(STORED))
    assert result.exit_code == 0, result.output
    return url


def test_every_text_field_of_every_record_type_refuses_control_characters() -> None:
    """Each record type's text fields, the ledger's own records included, are free text or a pattern."""
    for record_type in STORED_TYPES:
        for field in msgspec_fields(record_type):
            info = field.type
            strings = [t for t in getattr(info, "types", (info,)) if type(t).__name__ == "StrType"]
            for string in strings:
                assert string.pattern is not None, f"{record_type.__name__}.{field.name}"
                assert not re.search(string.pattern, "a\x1bb"), f"{record_type.__name__}.{field.name}"


def msgspec_fields(record_type: type) -> list[Any]:
    import msgspec.inspect as mi

    info = mi.type_info(record_type)
    assert isinstance(info, mi.StructType)
    return list(info.fields)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(TEXT_FIELDS), text=bad_text())
def test_control_characters_are_refused_naming_the_field(
    stored: str, where: tuple[Callable[[], dict[str, Any]], str], text: str
) -> None:
    build, field = where
    before = digest(stored)
    result = invoke(stored, "import", "-", stdin=L.jsonl([{**build(), field: text}]))
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.split(": ")[1] == "line 1"
    assert message.split(": ")[2] == field
    if field in FREE:
        assert message.endswith(": control characters are not allowed (free text may hold tab and newline)")
    assert digest(stored) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=bad_text())
def test_a_correction_cannot_bring_control_characters_in(stored: str, text: str) -> None:
    before = digest(stored)
    result = invoke(
        stored, "correct", "--target", "NFH-001-ae", "--changes", json.dumps({"term": text}), "--reason", "x"
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.split(": ")[1:3] == ["NFH-001", "changes.term"]
    assert digest(stored) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=bad_text())
def test_a_write_command_refuses_control_characters(stored: str, text: str) -> None:
    before = digest(stored)
    result = invoke(
        stored, "withdraw", "--participant", "NFH-001", "--effective", "2014-03-01", "--reason", text
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.removeprefix("error: ").split(": ")[0] == "reason"
    assert digest(stored) == before


def test_tab_and_newline_are_free_text() -> None:
    record = convert(
        L.withdrawal(reason="moved away\n\tto another city"), RECORD_TYPES["ParticipantWithdrew"]
    )
    assert record.reason == "moved away\n\tto another city"  # type: ignore[attr-defined]
    assert re.search(FREE_TEXT, "a\tb\nc")
    assert Text.__metadata__[0].max_length == 500  # type: ignore[attr-defined]


def test_a_user_name_with_a_space_is_refused_and_nothing_stored(stored: str) -> None:
    """The write path fills ``user`` from the options; it is checked as the import checks it."""
    before = digest(stored)
    result = CliRunner().invoke(
        main,
        [*DISEASE, "--store", stored, "--user", "Dr Who"],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.removeprefix("error: ").split(": ")[0] == "user"
    assert digest(stored) == before
    result = CliRunner().invoke(
        main, ["import", "-", "--store", stored, "--user", "Dr\x1bWho"], input=L.jsonl([L.disease()])
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.split(": ")[1:3] == ["line 1", "user"]
    assert "\x1b" not in result.stderr
    assert digest(stored) == before


# -- byte-order marks ------------------------------------------------------------------------------


def test_a_file_starting_with_a_utf8_byte_order_mark_is_imported(tmp_path: Path) -> None:
    url = str(tmp_path / "bom.db")
    result = invoke(url, "import", "-", "--json", stdin=b"\xef\xbb\xbf" + L.jsonl(L.treated()).encode())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"] == ["NFH-001-scr", "NFH-001-enr", "NFH-001-inf1"]


def test_a_byte_order_mark_elsewhere_or_of_utf16_is_named(stored: str) -> None:
    before = digest(stored)
    later = (L.jsonl([L.disease()]) + "\ufeff" + L.jsonl([L.disease(effective="2014-01-21")])).encode()
    result = invoke(stored, "import", "-", stdin=later)
    assert result.exit_code == 2, result.output
    assert (
        result.stderr.strip()
        == "error: line 2: a byte-order mark (U+FEFF) starts the line; only the file may"
    )
    utf16 = L.jsonl([L.disease()]).encode("utf-16")
    result = invoke(stored, "import", "-", stdin=utf16)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "error: line 1: the file is UTF-16 (byte-order mark); save it as UTF-8"
    assert digest(stored) == before


# -- outputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\\x0d=1"),
        ("-1.5", "-1.5"),
        ("+7", "+7"),
        (-1, -1),
        (-1.5, -1.5),
        ("Fever", "Fever"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        (None, ""),
    ],
)
def test_an_sdtm_cell_never_runs_as_a_formula(value: Any, cell: Any) -> None:
    assert spreadsheet_cell(value) == cell


def test_an_ae_term_that_looks_like_a_formula_is_text_in_the_sdtm_export(tmp_path: Path) -> None:
    url = str(tmp_path / "formula.db")
    lines = [*L.treated(), L.adverse_event(term="=cmd|' /C calc'!A0")]
    assert invoke(url, "import", "-", stdin=L.jsonl(lines)).exit_code == 0
    result = invoke(url, "export", "sdtm", str(tmp_path / "sdtm"), "--format", "csv", "--as-of", "2014-12-31")
    assert result.exit_code == 0, result.output
    import csv

    with (tmp_path / "sdtm" / "ae.csv").open(newline="") as file:
        (row,) = list(csv.DictReader(file))
    assert row["AETERM"] == "'=cmd|' /C calc'!A0"


def test_status_tables_show_control_characters_and_markup_escaped() -> None:
    row = {
        "participant": "NFH-\x1b]0;owned\x07001",
        "site": "[blink]NFH",
        "status": "withdrawn\x9b",
        "courses": 1,
        "first_infusion": None,
        "cr_date": None,
        "flags": ["late\x1b[2J"],
    }
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(
        status_view({"as_of": "2014-12-31", "known_at": "2030-01-01T00:00:00Z", "participants": [row]})
    )
    text = out.getvalue()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)
    assert "NFH-\\x1b]0;owned\\x07001" in text
    assert "[blink]NFH" in text
    assert "late\\x1b[2J" in text
