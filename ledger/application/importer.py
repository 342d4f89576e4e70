"""Import of a JSON Lines file: every line checked, then all stored or nothing (SPEC section 6).

A million-line import builds millions of small objects that live until the
end and form no reference cycles; Python's cyclic garbage collector would scan
them over and over (about a third of the import's time), so it is paused while
an import runs (:func:`_paused_gc`, issue #7).  Reference counting still frees
everything as usual.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ledger.application.trial_ledger import Line, Receipt, TrialLedger
from ledger.domain.errors import InvalidInput
from ledger.domain.events import InvalidRecord, decode_line

MAX_REPORTED = 50
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
    problems: list[str] = []
    for number, raw in enumerate(source, start=1):
        if number == 1:
            encoding = next((name for bom, name in _OTHER_BOMS if raw.startswith(bom)), None)
            if encoding is not None:
                raise InvalidInput(f"line 1: the file is {encoding} (byte-order mark); save it as UTF-8")
            raw = raw.removeprefix(UTF8_BOM)
        if raw.startswith(UTF8_BOM):
            problems.append(f"line {number}: a byte-order mark (U+FEFF) starts the line; only the file may")
            continue
        if not raw.strip():
            continue
        try:
            lines.append(Line(number, decode_line(raw)))
        except InvalidRecord as exc:
            problems.append(f"line {number}: {_located(raw, str(exc))}")
        except UnicodeDecodeError:
            problems.append(f"line {number}: {_not_utf8(raw)}")
    if problems:
        raise InvalidInput(_summary(problems), problems=_capped(problems))
    return lines


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
    """Import ``source`` into ``ledger``: all lines or none."""
    with _paused_gc():
        return _import(ledger, source, user, site, progress)


def _import(
    ledger: TrialLedger, source: BinaryIO, user: str | None, site: str | None, progress: bool
) -> Receipt:
    if progress:
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("checking lines..."):
            lines = read_lines(source)
        with console.status(f"checking {len(lines)} events against the protocol and storing..."):
            return ledger.record(lines, user=user, site=site)
    return ledger.record(read_lines(source), user=user, site=site)


@contextmanager
def _paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _summary(problems: list[str]) -> str:
    return f"{len(problems)} invalid line(s); nothing stored. First: {problems[0]}"


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_REPORTED:
        return problems
    return [*problems[:MAX_REPORTED], f"... and {len(problems) - MAX_REPORTED} more invalid lines"]
