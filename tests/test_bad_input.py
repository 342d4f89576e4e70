"""Bad input is refused with exit 2, the line and the field named, and nothing stored (SPEC section 6).

Hypothesis mutates one line of a valid import (a participant's whole course, one
line of every type) in the ways site data goes wrong: a required field missing,
a field not in the schema, a value of the wrong JSON type, a date that is not
one, a number out of range, a value outside its enumeration or pattern, text
that is not UTF-8, text far too long, a client ``id`` reused with other
content, a clinical date in the future, a line that is not JSON at all.  Each
mutated file must be refused as a whole with :class:`InvalidInput` (exit 2)
naming the line and the field, never another exception, and the store must be
exactly as before.

The bulk of the examples drive :func:`ledger.importer.read_lines` and
:meth:`TrialLedger.record` in-process; a sample goes through the real command
line (click's runner, and one real process) to check the exit code and that no
traceback is printed.  ``TRIAL_LEDGER_LONG=1`` multiplies the examples by five
(the long run of ``bench/reliability.py``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from ledger.application import TrialLedger
from ledger.errors import InvalidInput
from ledger.events import RECORD_TYPES
from ledger.importer import read_lines
from tests import lines as L

LONG = os.environ.get("TRIAL_LEDGER_LONG") == "1"
EXAMPLES = 50_000 if LONG else 10_000
CLI_EXAMPLES = 1_000 if LONG else 150
USER = "nfh.chen"
P = "NFH-500"

# A valid import: one participant's course with a line of every import type.
VALID: list[dict[str, Any]] = [
    L.screening(P, id="v-scr"),
    L.enrollment(P, id="v-enr"),
    L.infusion(P, id="v-inf", lot="MSC-1401-04"),
    L.cmv(P, id="v-cmv1"),
    L.cmv(P, id="v-cmv2", effective="2014-01-23", result="not_detected"),
    L.disease(P, id="v-dis", organ="lung"),
    L.adverse_event(P, id="v-ae"),
    L.ae_update(P, id="v-aeu", grade=1),
    L.withdrawal(P, id="v-wd"),
    L.correction("v-cmv1", {"value_iu_ml": 5600}, id="v-cor"),
    L.void("v-cmv2", id="v-void"),
]
TEXT_FIELDS = ("lot", "organ", "term", "reason", "assay", "deviation", "cause")
# Byte sequences that are never UTF-8: lone continuation, truncated, surrogate, overlong, 0xff.
NOT_MATCHING = {
    "id": ["-x", "a b", "Ä", "x" * 120, ";DROP TABLE", "#", "", "v#1"],
    "user": ["-x", "a b", "Ä", "x" * 80, ";DROP", ""],
    "site": ["nfh", "N FH", "-x", "ÄB", "X" * 20, "", "XYZ"],
    "participant": ["nfh-001", "NFH 001", "NFH-01", "NFH-", "-001", "Ä-001", ""],
}
NOT_UTF8 = [b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xff", b"\xf8\x88\x80\x80\x80"]


@dataclass(frozen=True)
class Case:
    """A malformed file: its lines (bytes), the bad line's number and the field to be named."""

    lines: list[bytes]
    number: int
    field: str | None
    kind: str

    def data(self) -> bytes:
        return b"\n".join(self.lines) + b"\n"


def _encode(line: dict[str, Any]) -> bytes:
    return json.dumps(line, ensure_ascii=False).encode()


def _field_types(line: dict[str, Any]) -> dict[str, Any]:
    return {f.name: f.type for f in mi.type_info(RECORD_TYPES[line["type"]]).fields}


def _base(info: Any) -> tuple[Any, bool]:
    """The field's type without its metadata and ``None``; whether ``None`` is allowed."""
    if isinstance(info, mi.Metadata):
        return _base(info.type)
    if isinstance(info, mi.UnionType):
        kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
        return _base(kinds[0])[0], len(kinds) < len(info.types)
    return info, False


# JSON values of each kind; a wrong value is drawn from the kinds a field does not accept.
KIND_VALUES = {
    "str": st.text(min_size=1, max_size=20),
    "int": st.integers(-(10**6), 10**6),
    "float": st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != int(v)),
    "bool": st.booleans(),
    "list": st.lists(st.integers(), max_size=3),
    "dict": st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
}
ACCEPTS = {
    mi.StrType: {"str"},
    mi.LiteralType: {"str"},
    mi.DateType: {"str"},
    mi.DateTimeType: {"str"},
    mi.IntType: {"int"},
    mi.FloatType: {"int", "float"},
    mi.BoolType: {"bool"},
    mi.ListType: {"list"},
    mi.DictType: {"dict"},
}


def _fields_of(line: dict[str, Any], kinds: tuple[type, ...]) -> list[str]:
    """The fields present in ``line`` whose type (without ``None``) is one of ``kinds``."""
    types = _field_types(line)
    return sorted(n for n in line if n in types and isinstance(_base(types[n])[0], kinds))


def _bounded(line: dict[str, Any]) -> list[str]:
    types = _field_types(line)
    return [
        n
        for n in _fields_of(line, (mi.IntType, mi.FloatType))
        if (info := _base(types[n])[0]).le is not None or info.ge is not None or info.gt is not None
    ]


# Which lines a kind of damage applies to: those having a field it can damage.
SUITABLE: dict[str, Any] = {
    "missing": lambda line: True,
    "unknown": lambda line: True,
    "wrong_type": lambda line: True,
    "bad_date": lambda line: bool(_fields_of(line, (mi.DateType, mi.DateTimeType))),
    "out_of_range": lambda line: bool(_bounded(line)),
    "enum": lambda line: bool(_fields_of(line, (mi.LiteralType,))),
    "pattern": lambda line: True,
    "not_utf8": lambda line: True,
    "too_long": lambda line: any(n in _field_types(line) for n in TEXT_FIELDS),
    "duplicate_id": lambda line: True,
    "future": lambda line: "effective" in line,
    "not_json": lambda line: True,
}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """One malformed import file: a kind of damage, done to one line that can take it."""
    lines = [dict(line) for line in VALID]
    kind = draw(st.sampled_from(sorted(SUITABLE)))
    index = draw(st.sampled_from([i for i, line in enumerate(lines) if SUITABLE[kind](line)]))
    line = lines[index]
    types = _field_types(line)
    field: str | None = None
    raw: bytes | None = None
    reported = index + 1
    if kind == "missing":
        field = draw(
            st.sampled_from([f.name for f in mi.type_info(RECORD_TYPES[line["type"]]).fields if f.required])
        )
        del line[field]
    elif kind == "unknown":
        field = draw(st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True).filter(lambda n: n not in types))
        line[field] = draw(st.one_of(*KIND_VALUES.values()))
    elif kind == "wrong_type":
        field = draw(st.sampled_from(sorted(name for name in line if name != "type")))
        wrong = sorted(set(KIND_VALUES) - ACCEPTS[type(_base(types[field])[0])])
        line[field] = draw(KIND_VALUES[draw(st.sampled_from(wrong))])
    elif kind == "bad_date":
        field = draw(st.sampled_from(_fields_of(line, (mi.DateType, mi.DateTimeType))))
        line[field] = draw(
            st.one_of(
                st.sampled_from(
                    ["2014-02-30", "2014-13-01", "14-01-16", "2014/01/16", "", "yesterday", "2014-1-6"]
                ),
                st.text(max_size=12).filter(lambda t: not t[:1].isdigit()),
            )
        )
    elif kind == "out_of_range":
        field = draw(st.sampled_from(_bounded(line)))
        info = _base(types[field])[0]
        low = info.ge if info.ge is not None else info.gt
        choices = [st.sampled_from([10**30, -(10**30)])]
        if info.le is not None:
            choices.append(st.integers(int(info.le) + 1, int(info.le) + 10**9))
        if low is not None:
            choices.append(st.integers(-(10**9), int(low) - 1))
        line[field] = draw(st.one_of(*choices))
    elif kind == "enum":
        field = draw(st.sampled_from(_fields_of(line, (mi.LiteralType,))))
        allowed = set(_base(types[field])[0].values)
        line[field] = draw(st.text(max_size=15).filter(lambda v: v not in allowed))
    elif kind == "pattern":
        field = draw(st.sampled_from(sorted(set(NOT_MATCHING) & ({"id", "user", "site"} | set(line)))))
        line[field] = draw(st.sampled_from(NOT_MATCHING[field]))
    elif kind == "not_utf8":
        field = draw(st.sampled_from(sorted(n for n in line if isinstance(line[n], str) and n != "type")))
        encoded = _encode(line)
        value = json.dumps(line[field], ensure_ascii=False).encode()
        at = encoded.index(b'"' + field.encode() + b'": ' + value) + len(field) + 4
        cut = at + draw(st.integers(1, len(value) - 1))
        raw = encoded[:cut] + draw(st.sampled_from(NOT_UTF8)) + encoded[cut:]
    elif kind == "too_long":
        field = draw(st.sampled_from([n for n in TEXT_FIELDS if n in types]))
        line[field] = draw(st.sampled_from(["x", "é", "字"])) * draw(st.sampled_from([501, 4_000, 2_000_000]))
    elif kind == "duplicate_id":
        # The line that comes second in the file is the one refused.
        field = "id"
        other = draw(st.integers(0, len(lines) - 1).filter(lambda i: i != index))
        line["id"] = lines[other]["id"]
        reported = max(index, other) + 1
    elif kind == "future":
        field = "effective"
        line["effective"] = draw(st.sampled_from(["2999-01-01", "2100-06-30"]))
    else:  # not_json: broken syntax, or JSON that is not an object; no field to name
        encoded = _encode(line)
        raw = draw(
            st.one_of(
                st.integers(1, len(encoded) - 1).map(lambda cut: encoded[:cut]),
                st.sampled_from([b"[1, 2]", b'"text"', b"42", b"null", b"{", b"}", b"{'type': 1}", b"NaN"]),
                st.binary(min_size=1, max_size=40).filter(
                    lambda b: b.strip() and b"\n" not in b and b"\r" not in b
                ),
            )
        )
    encoded_lines = [_encode(other) for other in lines]
    encoded_lines[index] = raw if raw is not None else _encode(line)
    return Case(encoded_lines, reported, field, kind)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrialLedger]:
    """A store holding one treated participant, shared by every example (none may change it)."""
    ledger = TrialLedger(str(tmp_path_factory.mktemp("bad-input") / "store.db"))
    ledger.record(L.as_lines(L.treated()), user=USER)
    yield ledger
    ledger.close()


def _state(ledger: TrialLedger) -> tuple[int, bytes]:
    with ledger.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT COUNT(*), (SELECT value FROM ledger_meta WHERE key = 'frontier') FROM stored_events"
        )
        count, frontier = cursor.fetchone()
    return count, bytes(frontier)


def _refusal(ledger: TrialLedger, case: Case) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        ledger.record(read_lines(io.BytesIO(case.data())), user=USER)
    return refused.value


def _names_line_and_field(problems: list[str], case: Case) -> bool:
    prefix = f"line {case.number}: "
    return any(p.startswith(prefix) and (case.field is None or case.field in p) for p in problems)


def test_the_valid_import_itself_is_stored(tmp_path: Path) -> None:
    ledger = TrialLedger(str(tmp_path / "ok.db"))
    receipt = ledger.record(read_lines(io.BytesIO(b"\n".join(_encode(line) for line in VALID))), user=USER)
    assert len(receipt.stored) == len(VALID)


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=cases())
def test_a_malformed_line_refuses_the_file_naming_line_and_field(ledger: TrialLedger, case: Case) -> None:
    before = _state(ledger)
    refused = _refusal(ledger, case)
    assert refused.exit_code == 2
    assert _names_line_and_field(refused.problems, case), (case.kind, case.field, refused.problems[:3])
    assert _state(ledger) == before


@settings(max_examples=CLI_EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_the_command_line_exits_2_naming_line_and_field_without_traceback(
    ledger: TrialLedger, case: Case
) -> None:
    before = _state(ledger)
    result = CliRunner().invoke(
        main, ["--store", ledger.store, "--user", USER, "--json", "import", "-"], input=case.data()
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    problems = json.loads(result.stdout)["problems"]
    assert _names_line_and_field(problems, case), (case.kind, case.field, problems[:3])
    assert _state(ledger) == before


def test_a_real_process_reports_every_bad_line_and_no_traceback(ledger: TrialLedger, tmp_path: Path) -> None:
    lines = [_encode(line) for line in VALID]
    lines[1] = lines[1].replace(b'"weight_kg": 61.5', b'"weight_kg": "heavy"')
    lines[3] = lines[3].replace(b"COBAS", b"CO\xffBAS")
    lines[6] = lines[6].replace(b'"term": "Fever"', b'"term": "' + b"x" * 3_000_000 + b'"')
    lines[8] = b'{"type": "ParticipantWithdrew", "participant": "NFH-500", "effective": "2014-03-01"'
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    before = _state(ledger)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cli; cli.main()",
            "--store",
            ledger.store,
            "--user",
            USER,
            "import",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    for number, field in ((2, "weight_kg"), (4, "assay"), (7, "term"), (9, "effective: not valid JSON")):
        assert any(f"line {number}: " in row and field in row for row in done.stderr.splitlines()), (
            done.stderr
        )
    assert _state(ledger) == before
