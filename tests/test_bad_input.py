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

The bulk of the examples drive :func:`ledger.application.importer.read_lines` and
:meth:`TrialLedger.record` in-process; a sample goes through the real command
line (click's runner, and one real process) to check the exit code and that no
traceback is printed.  ``TRIAL_LEDGER_LONG=1`` multiplies the examples by five
(the long run of ``bench/reliability.py``).

A second family of tests puts many malformed lines in one file (more than
10,000 over the run, in about ten seconds): besides the damage above,
``NaN``/``Infinity``/``1e999`` written as numbers, nested junk, an import type
that only the ledger may write (``DatabaseLocked``, ``UserRegistered``...), a
client id already stored with other content, a participant never screened, a
course given twice, corrections of nothing or into an invalid record.  Schema
errors must be named by :func:`ledger.application.importer.read_lines`, rule errors by
:meth:`TrialLedger.record`, one problem per bad line; the store is compared
byte for byte (every stored event, the seal's head).  Two tests keep fixed
crashes fixed: a deeply nested line and a 65-bit integer in a correction's
``changes`` are refused with exit 2, never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cli import main
from ledger.application.importer import MAX_REPORTED, read_lines
from ledger.application.trial_ledger import TrialLedger
from ledger.domain.errors import InvalidInput
from ledger.domain.events import CHOICES, RECORD_TYPES, decode_line
from ledger.storage.scan import snapshot
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


# -- many malformed lines in one file ------------------------------------------------------

CONSOLE = str(Path(sys.executable).with_name("trial-ledger"))
STORED = ("NFH-001", "NFH-002", "NFH-003")  # treated participants in the store; NFH-001 has AE-1
MANY = settings(
    max_examples=130,
    derandomize=True,
    database=None,
    phases=[
        Phase.explicit,
        Phase.generate,
    ],  # a failing file is reported as drawn: shrinking one takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
# A problem about a line that is not a JSON object, not JSON, or not UTF-8 (no field to blame).
NOT_JSON = re.compile(r"JSON|object|UTF-8", re.IGNORECASE)
BIG = "\x00BIG\x00"  # replaced by a raw number literal after json.dumps


@dataclass(frozen=True)
class Bad:
    """One malformed line and what its problem must name (``None``: that it is not a JSON object)."""

    raw: bytes
    field: str | None
    kind: str
    loose: bool = False  # the field, or that the line is not JSON / not UTF-8, may be named


def encode(line: dict[str, Any]) -> bytes:
    return json.dumps(line, ensure_ascii=False).encode()


def templates() -> list[dict[str, Any]]:
    """A valid line of every import type."""
    return [
        L.screening("NFH-100", id="t-scr"),
        L.enrollment("NFH-001", id="t-enr"),
        L.infusion("NFH-001", id="t-inf", course=2, lot="MSC-1401-04"),
        L.cmv("NFH-001", id="t-cmv"),
        L.disease("NFH-001", id="t-dis", organ="lung"),
        L.adverse_event("NFH-001", id="t-ae", ae_id="AE-7"),
        L.ae_update("NFH-001", id="t-aeu", grade=1),
        L.withdrawal("NFH-001", id="t-wd"),
        L.death("NFH-001", id="t-death", cause="sepsis"),
        L.correction("NFH-001-enr", {"weight_kg": 60}, id="t-cor"),
        L.void("NFH-001-inf1", id="t-void"),
    ]


def required(line: dict[str, Any]) -> list[str]:
    fields = msgspec.structs.fields(RECORD_TYPES[line["type"]])
    return [f.name for f in fields if f.required]


def known(line: dict[str, Any]) -> set[str]:
    return {f.name for f in msgspec.structs.fields(RECORD_TYPES[line["type"]])} | {"type"}


RANGES: dict[str, list[Any]] = {
    "age_years": [-1, 131, 10**30],
    "hr": [0, 351],
    "rr": [0, 121],
    "sbp": [0, 351],
    "dbp": [0, 251],
    "weight_kg": [0, -5.5, 400.5, BIG],
    "course": [0, 100, 2**64],
    "cells_per_kg": [0, 1e9 + 1, BIG],
    "lloq_iu_ml": [0, 1e6 + 1],
    "value_iu_ml": [0, 1e13, BIG],
    "grade": [0, 6, -1],
}
TEXT = ("lot", "organ", "term", "reason", "assay", "cause")
PATTERNS = {
    "participant": ["nfh-001", "NFH 001", "NFH-01", "-001", "", "NFH-001\u0000"],
    "id": ["-x", "a b", "x" * 101, "#1", ""],
    "user": ["-x", "a b", "u" * 65, "ü"],
    "site": ["nfh", "N FH", "", "X" * 11],
    "ae_id": ["-1", "AE 1", "a" * 41],
}
BAD_DATES = [
    "2014-02-30",
    "2014-13-01",
    "14-01-16",
    "2014/01/16",
    "",
    "yesterday",
    "2014-1-6",
    "2014-01-16T00:00:00Z",
]
BAD_INSTANTS = ["2014-01-16T10:00:00", "2014-02-30T10:00:00Z", "2014-01-16 25:00", "soon", "2014-01-16"]
NOT_IMPORT_TYPES = ["DatabaseLocked", "UserRegistered", "EnrollmentRefused", "ActionRefused", "Nope", ""]

junk: st.SearchStrategy[Any] = st.recursive(
    # Integers within 64 bits: a larger one in a correction is test_bug_huge_integer_in_changes...
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
nested_junk = st.dictionaries(st.text(max_size=4), junk, min_size=1, max_size=3)


@st.composite
def schema_bad(draw: st.DrawFn) -> Bad:
    """A line that ``read_lines`` must refuse."""
    line = draw(st.sampled_from(templates()))
    fields = [name for name in line if name != "type"]
    kind = draw(
        st.sampled_from(
            ["missing", "unknown", "wrong_type", "bad_date", "range", "nan", "enum", "pattern", "huge",
             "cross", "not_utf8", "not_object", "broken", "type"]
        )
    )  # fmt: skip
    field: str | None
    if kind == "missing":
        field = draw(st.sampled_from([*required(line), "type"]))
        del line[field]
    elif kind == "unknown":
        field = draw(
            st.sampled_from(["name", "birth_date", "phone", "mrn"])
            | st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True)
        )
        if field in known(line):
            field = field + "_x"
        line[field] = draw(junk)
    elif kind == "wrong_type":
        field = draw(st.sampled_from(fields))
        line[field] = draw(st.lists(junk, min_size=1, max_size=3) if field == "changes" else nested_junk)
    elif kind == "bad_date":
        dates = [f for f in ("effective", "consent_date", "resolved_date") if f in line]
        field = draw(st.sampled_from([*dates, "entered_at", *(["aware_at"] if "aware_at" in line else [])]))
        line[field] = draw(st.sampled_from(BAD_DATES if field in dates else BAD_INSTANTS))
    elif kind == "range":
        line = draw(st.sampled_from([t for t in templates() if set(t) & set(RANGES)]))
        field = draw(st.sampled_from(sorted(set(line) & set(RANGES))))
        line[field] = draw(st.sampled_from(RANGES[field]))
    elif kind == "nan":
        line = draw(st.sampled_from([t for t in templates() if set(t) & set(RANGES)]))
        field = draw(st.sampled_from(sorted(set(line) & set(RANGES))))
        line[field] = BIG
    elif kind == "enum":
        line = draw(st.sampled_from([t for t in templates() if set(t) & set(CHOICES)]))
        field = draw(st.sampled_from(sorted(set(line) & set(CHOICES))))
        value = draw(st.text(max_size=12).filter(lambda v: v not in CHOICES[field]))
        line[field] = [value] if field == "criteria" else value
    elif kind == "pattern":
        field = draw(st.sampled_from(sorted(set(PATTERNS) & (set(line) | {"id", "user", "site"}))))
        line[field] = draw(st.sampled_from(PATTERNS[field]))
    elif kind == "huge":
        line = draw(st.sampled_from([t for t in templates() if set(t) & {*TEXT, "id"}]))
        field = draw(st.sampled_from(sorted(set(line) & {*TEXT, "id"})))
        line[field] = draw(st.sampled_from("xé字")) * draw(st.sampled_from([501, 100_000, 1_000_000]))
    elif kind == "cross":
        line, field = draw(
            st.sampled_from(
                [
                    ({**L.cmv("NFH-001"), "result": "quantified", "value_iu_ml": None}, "value_iu_ml"),
                    (L.cmv("NFH-001", result="not_detected", value_iu_ml=30), "value_iu_ml"),
                    (L.adverse_event("NFH-001", serious=True, criteria=[]), "criteria"),
                    (L.adverse_event("NFH-001", serious=False, criteria=["death"]), "criteria"),
                    (L.adverse_event("NFH-001", grade=5), "grade"),
                    (L.adverse_event("NFH-001", serious=True, criteria=["death", "death"]), "criteria"),
                    (L.screening("AMMS-001", site="NFH"), "participant"),
                    (L.correction("NFH-001-enr", {}), "changes"),
                    (L.correction("NFH-001-enr", {"participant": "NFH-002"}), "changes.participant"),
                    (L.correction("NFH-001-enr", {"type": "MSCInfused"}), "changes.type"),
                ]
            )
        )
    elif kind == "not_utf8":
        field = draw(st.sampled_from([n for n in fields if isinstance(line[n], str) and line[n]]))
        encoded, value = encode(line), json.dumps(line[field], ensure_ascii=False).encode()
        at = encoded.index(b'"' + field.encode() + b'": ' + value) + len(field) + 5
        cut = at + draw(st.integers(0, len(value) - 2))
        return Bad(encoded[:cut] + draw(st.sampled_from(NOT_UTF8)) + encoded[cut:], field, kind, loose=True)
    elif kind == "not_object":
        raw = draw(st.sampled_from([b"[]", b"[1, 2]", b"1", b'"text"', b"null", b"true", b"-0.5e3"]))
        return Bad(raw, None, kind)
    elif kind == "broken":
        encoded = encode(line)
        raw = draw(
            st.sampled_from([encoded + b" x", encoded[:-1] + b",}", encoded.replace(b'"', b"'"), b"{", b"}"])
            | st.integers(1, len(encoded) - 1).map(lambda cut: encoded[:cut])
        )
        return Bad(raw, None, kind)
    else:
        field = "type"
        line["type"] = draw(st.sampled_from(NOT_IMPORT_TYPES))
    raw = encode(line)
    if BIG.encode() in json.dumps(line).encode() or '"\\u0000BIG\\u0000"' in json.dumps(line):
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"]))
        raw = json.dumps(line).encode().replace(b'"\\u0000BIG\\u0000"', literal)
        if literal.lstrip(b"-").startswith((b"N", b"I")):
            return Bad(raw, field, "nan", loose=True)  # not JSON: the field may be named
    return Bad(raw, field, kind)


@st.composite
def rule_bad(draw: st.DrawFn, n: int) -> list[Bad]:
    """Lines that decode but that ``record`` must refuse (``n`` makes ids unique in a file).

    A duplicate of an id in the file comes as two lines: the first is valid.
    """
    who = draw(st.sampled_from(STORED))
    kinds = ["future", "stored_id", "dup_in_file", "site", "not_screened", "course", "rescreen"]
    kinds += ["reenroll", "no_target", "bad_correction", "ae_unknown", "ae_twice", "hash_id"]
    kinds += ["death_early", "update_early", "future_consent"]
    kind = draw(st.sampled_from(kinds))
    fid = f"rb-{n}"
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "future": (L.cmv(who, id=fid, effective="2999-01-01"), "effective"),
        "stored_id": (L.cmv(who, id=f"{who}-scr"), "id"),
        "site": (draw(st.sampled_from([L.screening("XYZ-001", id=fid), L.cmv("XYZ-002", id=fid)])), "site"),
        "not_screened": (L.cmv(f"NFH-9{n % 100:02d}", id=fid), "participant"),
        "course": (L.infusion(who, id=fid, course=1), "course"),
        "rescreen": (L.screening(who, id=fid), "type"),
        "reenroll": (L.enrollment(who, id=fid), "type"),
        "no_target": (
            draw(st.sampled_from([L.correction(f"none-{n}", {"lot": "x"}), L.void(f"no-{n}")])),
            "target",
        ),
        "ae_unknown": (L.ae_update(who, id=fid, ae_id="AE-99"), "ae_id"),
        "ae_twice": (L.adverse_event("NFH-001", id=fid, ae_id="AE-1"), "ae_id"),
        "hash_id": (L.cmv(who, id=f"x#{n}"), "id"),
        "death_early": (L.death(who, id=fid, effective="2014-01-07"), "effective"),
        "update_early": (L.ae_update("NFH-001", id=fid, effective="2014-01-01"), "effective"),
        "future_consent": (
            L.screening(f"NFH-8{n % 100:02d}", id=fid, consent_date="2999-12-31"),
            "consent_date",
        ),
    }
    if kind == "dup_in_file":
        first = L.cmv(who, id=fid, effective="2014-01-20")
        return [
            Bad(encode(first), None, "valid"),
            Bad(encode({**first, "effective": "2014-01-21"}), "id", kind),
        ]
    if kind == "bad_correction":
        target, changes, field = draw(
            st.sampled_from(
                [
                    (f"{who}-enr", {"weight_kg": -2}, "weight_kg"),
                    (f"{who}-enr", {"effective": "2014-01-01"}, "effective"),
                    (f"{who}-inf1", {"lot": ""}, "lot"),
                    (f"{who}-inf1", {"course": "two"}, "course"),
                    (f"{who}-inf1", {"name": "Chen Li"}, "name"),
                ]
            )
        )
        return [Bad(encode(L.correction(target, changes, id=fid)), field, kind)]
    line, field = cases[kind]
    return [Bad(encode(line), field, kind)]


def valid_line(n: int) -> bytes:
    return encode(
        L.cmv(STORED[n % 3], id=f"ok-{n}", effective=f"2014-01-{20 + n % 9:02d}", result="not_detected")
    )


def assemble(bads: list[Bad], fillers: list[int]) -> tuple[bytes, dict[int, Bad]]:
    """A file of the bad lines with valid lines between them; the bad lines by line number."""
    rows: list[bytes] = []
    expected: dict[int, Bad] = {}
    for i, bad in enumerate(bads):
        for _ in range(fillers[i % len(fillers)]):
            rows.append(valid_line(len(rows)))
        rows.append(bad.raw)
        if bad.kind != "valid":
            expected[len(rows)] = bad
    rows.append(valid_line(len(rows)))
    return b"\n".join(rows) + b"\n", expected


def check_problems(problems: list[str], expected: dict[int, Bad]) -> None:
    """One problem per bad line, ``line N: ...`` naming the field (or saying it is not JSON)."""
    by_line: dict[int, list[str]] = {}
    for problem in problems:
        found = re.match(r"line (\d+): ", problem)
        assert found, f"problem without a line number: {problem[:200]}"
        by_line.setdefault(int(found.group(1)), []).append(problem)
    assert sorted(by_line) == sorted(expected), (sorted(set(by_line) ^ set(expected)), problems[:5])
    for number, bad in expected.items():
        [problem] = by_line[number]
        text = problem[:2000]
        if bad.field is None:
            assert NOT_JSON.search(text), (bad.kind, text)
        elif bad.loose:
            assert bad.field in text or NOT_JSON.search(text), (bad.kind, bad.field, text)
        else:
            assert bad.field in text, (bad.kind, bad.field, text)


def store_state(ledger: TrialLedger) -> tuple[list[tuple[int, str, bytes]], dict[str, bytes], int]:
    """Every stored event (position, stream, stored bytes), the seal's head and its entry count."""
    with snapshot(ledger) as snap:
        return list(snap.events()), snap.meta(), snap.entry_count()


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrialLedger]:
    ledger = TrialLedger(str(tmp_path_factory.mktemp("bad-input") / "store.db"))
    setup = [line for who in STORED for line in L.treated(who)] + [
        L.adverse_event("NFH-001", id="NFH-001-ae1")
    ]
    ledger.record(L.as_lines(setup), user=USER)
    yield ledger
    ledger.close()


def test_the_templates_decode_and_the_fillers_are_stored(tmp_path: Path) -> None:
    """Undamaged, the templates pass the schema and the fillers are stored."""
    for template in templates():
        assert decode_line(encode(template)).type == template["type"]
    fresh = TrialLedger(str(tmp_path / "ok.db"))
    fresh.record(L.as_lines([line for who in STORED for line in L.treated(who)]), user=USER)
    receipt = fresh.record(read_lines(io.BytesIO(b"\n".join(valid_line(n) for n in range(30)))), user=USER)
    assert len(receipt.stored) == 30


def test_more_than_ten_thousand_malformed_lines_are_each_named_and_nothing_is_stored(
    populated: TrialLedger,
) -> None:
    before = store_state(populated)
    counted = {"schema": 0, "rules": 0}

    @MANY
    @given(
        schema=st.lists(schema_bad(), min_size=45, max_size=MAX_REPORTED),
        rules=st.lists(st.integers(0, 10**6), min_size=55, max_size=70).flatmap(
            lambda ns: st.tuples(*(rule_bad(n) for n in dict.fromkeys(ns)))
        ),
        fillers=st.lists(st.integers(0, 2), min_size=1, max_size=5),
    )
    def check(schema: list[Bad], rules: tuple[list[Bad], ...], fillers: list[int]) -> None:
        # Schema errors: read_lines names each one (up to MAX_REPORTED per file, all of them here).
        data, expected = assemble(schema, fillers)
        with pytest.raises(InvalidInput) as refused:
            read_lines(io.BytesIO(data))
        assert refused.value.exit_code == 2
        check_problems(refused.value.problems, expected)
        counted["schema"] += len(expected)
        # Rule errors: the lines decode; record refuses the whole batch naming each one.
        data, expected = assemble([bad for group in rules for bad in group], fillers)
        lines = read_lines(io.BytesIO(data))
        with pytest.raises(InvalidInput) as refused:
            populated.record(lines, user=USER)
        assert refused.value.exit_code == 2
        check_problems(refused.value.problems, expected)
        counted["rules"] += len(expected)
        assert store_state(populated) == before

    check()
    assert counted["schema"] + counted["rules"] >= 10_000, counted


def test_past_the_report_limit_the_count_of_bad_lines_is_still_given(populated: TrialLedger) -> None:
    bad = [Bad(b"{", None, "broken")] * 120
    data, expected = assemble(bad, [1])
    with pytest.raises(InvalidInput) as refused:
        read_lines(io.BytesIO(data))
    problems = refused.value.problems
    assert len(problems) == MAX_REPORTED + 1
    assert problems[-1] == f"... and {120 - MAX_REPORTED} more invalid lines"
    assert "120 invalid line(s)" in str(refused.value)
    check_problems(problems[:-1], {n: expected[n] for n in sorted(expected)[:MAX_REPORTED]})


@settings(max_examples=30, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(schema=st.lists(schema_bad(), min_size=1, max_size=5), rule=rule_bad(1))
def test_the_command_line_names_every_bad_line_of_a_file_without_traceback(
    populated: TrialLedger, schema: list[Bad], rule: list[Bad]
) -> None:
    before = store_state(populated)
    for bads in (schema, rule):
        data, expected = assemble(bads, [1])
        result = CliRunner().invoke(
            main, ["--store", populated.store, "--user", USER, "import", "-"], input=data
        )
        assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:], result.exception)
        assert isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.stderr
        problems = [
            row.removeprefix("error: ") for row in result.stderr.splitlines() if row.startswith("error: ")
        ]
        check_problems(problems, expected)
    assert store_state(populated) == before


def test_a_real_process_exits_2_naming_each_bad_line_without_traceback(
    populated: TrialLedger, tmp_path: Path
) -> None:
    rows = [valid_line(n) for n in range(8)]
    rows[1] = encode(L.enrollment("NFH-001", weight_kg="heavy"))
    rows[2] = encode(L.cmv("NFH-001", assay="CO")).replace(b'"CO"', b'"C\xffO"')
    rows[3] = encode(L.adverse_event("NFH-001", term="x" * 1_000_000))
    rows[4] = encode(L.enrollment("NFH-001")).replace(b"61.5", b"NaN")
    rows[5] = b"[1, 2]"
    rows[6] = encode({**L.screening("NFH-200"), "name": "Chen Li"})
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(rows) + b"\n")
    before = store_state(populated)
    done = subprocess.run(
        [CONSOLE, "--store", populated.store, "--user", USER, "import", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    errors = done.stderr.splitlines()
    for number, words in (
        (2, "weight_kg"),
        (3, "UTF-8"),
        (4, "term"),
        (5, "JSON"),
        (6, "object"),
        (7, "name"),
    ):
        assert any(row.startswith(f"error: line {number}: ") and words in row for row in errors), (
            number,
            errors,
        )
    assert store_state(populated) == before


# -- crashes that stay fixed ------------------------------------------------------------

DEEP = 5_000  # nesting levels; msgspec gives up past about 1,000 in an ``Any`` value


def deep_correction() -> bytes:
    return b'{"type": "EventCorrected", "target": "NFH-001-enr", "reason": "r", "changes": {"weight_kg": ' + (
        b"[" * DEEP + b"]" * DEEP + b"}}"
    )


def test_deeply_nested_json_is_invalid_input_not_a_crash(populated: TrialLedger, tmp_path: Path) -> None:
    """A line nested thousands of levels deep is refused naming ``changes`` (exit 2), not a traceback.

    ``EventCorrected.changes`` is the one field whose values msgspec decodes
    without a type, so only it can reach the recursion limit.
    """
    before = store_state(populated)
    try:
        read_lines(io.BytesIO(deep_correction() + b"\n"))
    except InvalidInput as refused:
        check_problems(refused.problems, {1: Bad(b"", "changes", "deep")})
    except RecursionError:
        pytest.fail("read_lines let a RecursionError escape on a deeply nested line")
    else:
        pytest.fail("a deeply nested correction was accepted by read_lines")
    result = CliRunner().invoke(
        main, ["--store", populated.store, "--user", USER, "import", "-"], input=deep_correction()
    )
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    changes = '{"weight_kg": ' + "[" * 3_000 + "]" * 3_000 + "}"
    correct = ["correct", "--target", "NFH-001-enr", "--reason", "r", "--changes", changes]
    result = CliRunner().invoke(main, ["--store", populated.store, "--user", USER, *correct])
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert store_state(populated) == before


def test_a_huge_integer_in_the_changes_of_a_correction_is_invalid_input_not_a_crash(
    populated: TrialLedger,
) -> None:
    """An integer beyond 64 bits in ``changes`` is refused by the schema, naming ``changes.hr`` (exit 2).

    MessagePack holds no such integer, so it must never reach the content hash
    of a line with an ``id`` or the store.
    """
    before = store_state(populated)
    line = encode(L.correction("NFH-001-scr", {"hr": 2**64}, id="c1"))
    try:
        populated.record(read_lines(io.BytesIO(line + b"\n")), user=USER)
    except InvalidInput as refused:
        check_problems(refused.problems, {1: Bad(line, "hr", "huge-int")})
    except OverflowError:
        pytest.fail("record let an OverflowError escape (content_hash of the line)")
    else:
        pytest.fail("a correction to hr = 2**64 was stored")
    result = CliRunner().invoke(main, ["--store", populated.store, "--user", USER, "import", "-"], input=line)
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert store_state(populated) == before
