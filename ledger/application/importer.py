"""Import of a JSON Lines file: every line checked, then all stored or nothing (SPEC section 6).

The file is streamed (issue 14): a first pass validates every line and stages
it on disk (:mod:`ledger.storage.staging`), a second checks the staged lines
against the ledger a group of participants at a time and stages their events,
and only then are the events moved into the ledger, in one transaction.  No
pass holds the whole file, so memory stays bounded whatever its size.

An import builds millions of small objects that form no reference cycles;
Python's cyclic garbage collector would scan them over and over (about a third
of the import's time), so it is paused while an import runs (:func:`_paused_gc`,
issue #7).  Reference counting still frees everything as usual.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ledger.application.trial_ledger import Line, Receipt, TrialLedger
from ledger.domain.errors import InvalidInput
from ledger.domain.events import ClinicalRecord, InvalidRecord, Record, decode_line
from ledger.storage.staging import UNKNOWN, Staging

MAX_REPORTED = 50
# Lines staged per write to the staging file.
STAGE_BATCH = 10_000
UTF8_BOM = b"\xef\xbb\xbf"
# Byte-order marks of encodings the import format is not (SPEC section 6: UTF-8).
_OTHER_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_BYTE = re.compile(r"\(byte (\d+)\)")
_KEY = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:')


def read_lines(source: BinaryIO) -> list[Line]:
    """Decode and validate every line; raise :class:`InvalidInput` naming each bad one.

    A UTF-8 byte-order mark at the start of the file, as some editors save one,
    is skipped (docs/decisions.md); anywhere else, or one of another encoding,
    is named.
    """
    lines: list[Line] = []
    problems = _Problems()
    for number, _, decoded in _decoded(source):
        if isinstance(decoded, str):
            problems.add(decoded)
        else:
            lines.append(Line(number, decoded))
    problems.check()
    return lines


def stage_lines(source: BinaryIO, staging: Staging) -> None:
    """Validate every line as :func:`read_lines` does, staging each as its bytes (issue 14).

    Only the line's number, participant (or a correction's target), client id
    and bytes are kept, on disk: memory does not grow with the file.
    """
    problems = _Problems()
    rows: list[tuple[int, str, str | None, str | None, bytes]] = []
    for number, raw, decoded in _decoded(source):
        if isinstance(decoded, str):
            problems.add(decoded)
        elif not problems.count:
            if isinstance(decoded, ClinicalRecord):
                rows.append((number, decoded.participant, decoded.id, None, raw))
            else:
                rows.append((number, UNKNOWN, decoded.id, getattr(decoded, "target", None), raw))
            if len(rows) == STAGE_BATCH:
                staging.add_lines(rows)
                rows = []
    problems.check()
    staging.add_lines(rows)
    staging.index_lines()


def _decoded(source: BinaryIO) -> Iterator[tuple[int, bytes, Record | str]]:
    """``(number, bytes, record or what is wrong with it)`` of every line that is not blank."""
    for number, raw in enumerate(source, start=1):
        if number == 1:
            encoding = next((name for bom, name in _OTHER_BOMS if raw.startswith(bom)), None)
            if encoding is not None:
                raise InvalidInput(f"line 1: the file is {encoding} (byte-order mark); save it as UTF-8")
            raw = raw.removeprefix(UTF8_BOM)
        if raw.startswith(UTF8_BOM):
            yield number, raw, f"line {number}: a byte-order mark (U+FEFF) starts the line; only the file may"
            continue
        if not raw.strip():
            continue
        try:
            yield number, raw, decode_line(raw)
        except InvalidRecord as exc:
            yield number, raw, f"line {number}: {_located(raw, str(exc))}"
        except UnicodeDecodeError:
            yield number, raw, f"line {number}: {_not_utf8(raw)}"


class _Problems:
    """The bad lines of a file: how many, and the first ones (the report shows no more)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def add(self, problem: str) -> None:
        self.count += 1
        if len(self.first) < MAX_REPORTED:
            self.first.append(problem)

    def check(self) -> None:
        """Raise :class:`InvalidInput` naming the bad lines, if there are any."""
        if not self.count:
            return
        more = self.count - len(self.first)
        reported = [*self.first, f"... and {more} more invalid lines"] if more else self.first
        raise InvalidInput(
            f"{self.count} invalid line(s); nothing stored. First: {self.first[0]}", problems=reported
        )


def _located(raw: bytes, message: str) -> str:
    """A message about broken JSON, with the field where it broke when there is one."""
    if not message.startswith("not a JSON object"):
        return message
    if "UTF-8" in message:
        # msgspec gives no offset for bad UTF-8: find it, and the field it is in.
        return _not_utf8(raw)
    offset = _BYTE.search(message)
    where = _field_at(raw, int(offset.group(1)) if offset else len(raw))
    return (
        f"{where}not valid JSON: {message.removeprefix('not a JSON object: JSON is malformed: ')}"
        if where
        else message
    )


def _not_utf8(raw: bytes) -> str:
    """Where a line stops being UTF-8, and in which field."""
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return f"{_field_at(raw, exc.start)}text is not valid UTF-8 (byte {exc.start})"
    return "text is not valid UTF-8"


def _field_at(raw: bytes, offset: int) -> str:
    """``"name: "`` of the last field named before byte ``offset`` of a line, or ``""``."""
    keys = _KEY.findall(raw[:offset])
    return f"{keys[-1].decode(errors='replace')}: " if keys else ""


def import_lines(
    ledger: TrialLedger,
    source: BinaryIO,
    *,
    user: str | None = None,
    site: str | None = None,
    progress: bool = False,
) -> Receipt:
    """Import ``source`` into ``ledger``: all lines or none, streamed through a staging file."""
    with _paused_gc(), Staging() as staging:
        if not progress:
            stage_lines(source, staging)
            return ledger.record_staged(staging, user=user, site=site)
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("checking lines..."):
            stage_lines(source, staging)
        with console.status(f"checking {staging.count} events against the protocol and storing..."):
            return ledger.record_staged(staging, user=user, site=site)


@contextmanager
def _paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
