"""Check a proof from ``trial-ledger prove`` against a published digest, with no database (SPEC section 5).

An auditor needs only this file, :mod:`ledger.evidence.merkle` and Python's standard
library (no MessagePack package, no store): ``python -m ledger.evidence.proofcheck
PROOF.json [DIGEST.json]`` or :func:`check_proof`.

A proof document is :func:`ledger.evidence.merkle.inclusion_proof_document` or
:func:`ledger.evidence.merkle.consistency_proof_document`.  ``prove EVENT_ID`` adds an
``event`` object to an inclusion proof: the event's canonical bytes (``entry``,
hex: the MessagePack array ``[position, participant, version, topic, state]``
of :func:`ledger.storage.seal.canonical_entry`, whose RFC 6962 leaf hash is the proof's
``leaf_hash``) and, for people, what those bytes say (position, event id,
participant, recorded_at, the record).  :func:`check_proof` verifies the
Merkle path, that the tree head is the published digest, that ``entry``
hashes to the leaf, and that every readable field of ``event`` is what
``entry`` really holds; a change to any byte of any of them fails the check.

The tree size is bound to the root only by the digest: take ``size`` and
``root`` from a digest published earlier, never from the proof alone.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.evidence.merkle import leaf_hash, verify_proof_document

__all__ = ["EventView", "check_proof", "read_entry"]


class MalformedEntry(ValueError):
    """Bytes that are not a canonical ledger entry."""


# -- a minimal MessagePack reader (the subset the ledger writes) -------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise MalformedEntry("truncated MessagePack data")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def value(self, depth: int = 0) -> Any:
        """Read one value: nil, bool, int, float, str, bin, array, map, timestamp."""
        if depth > 32:
            raise MalformedEntry("nested too deeply")
        b = self.take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return [self.value(depth + 1) for _ in range(b & 0x0F)]
        if 0xA0 <= b <= 0xBF:
            return self.text(b & 0x1F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sized = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}
        if b in sized:
            n = self.unpack(sized[b])
            return self.take(n) if b <= 0xC6 else self.text(n)
        numbers = {
            0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
            0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
        }  # fmt: skip
        if b in numbers:
            return self.unpack(numbers[b])
        if b in (0xDC, 0xDD):
            return [self.value(depth + 1) for _ in range(self.unpack(">H" if b == 0xDC else ">I"))]
        if b in (0xDE, 0xDF):
            return self.map(self.unpack(">H" if b == 0xDE else ">I"), depth)
        ext_sizes = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
        if b in ext_sizes or b in (0xC7, 0xC8, 0xC9):
            n = ext_sizes.get(b) or self.unpack({0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}[b])
            return self.timestamp(self.unpack(">b"), self.take(n))
        raise MalformedEntry(f"unsupported MessagePack type byte 0x{b:02x}")

    def text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEntry("invalid UTF-8 in a string") from None

    def map(self, n: int, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if not isinstance(key, str) or key in result:
                raise MalformedEntry("map keys must be distinct strings")
            result[key] = self.value(depth + 1)
        return result

    @staticmethod
    def timestamp(kind: int, data: bytes) -> dt.datetime:
        """The MessagePack timestamp extension (type -1)."""
        if kind != -1:
            raise MalformedEntry(f"unsupported MessagePack extension type {kind}")
        if len(data) == 4:
            seconds, nanos = struct.unpack(">I", data)[0], 0
        elif len(data) == 8:
            value = struct.unpack(">Q", data)[0]
            seconds, nanos = value & 0x3_FFFF_FFFF, value >> 34
        elif len(data) == 12:
            nanos, seconds = struct.unpack(">Iq", data)
        else:
            raise MalformedEntry("bad timestamp length")
        if nanos > 999_999_999:
            raise MalformedEntry("bad timestamp nanoseconds")
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        try:
            return epoch + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
        except OverflowError:
            raise MalformedEntry("timestamp out of range") from None


def _decode(data: bytes) -> Any:
    reader = _Reader(bytes(data))
    value = reader.value()
    if reader.at != len(reader.data):
        raise MalformedEntry("trailing bytes after the MessagePack value")
    return value


def _plain(value: Any) -> Any:
    """JSON-ready: date-times as ISO 8601 UTC with ``Z`` (as msgspec writes them), bytes as hex."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- the event an inclusion proof is about ---------------------------------------------------------


@dataclass(frozen=True)
class EventView:
    """What one canonical ledger entry says, readable (SPEC section 5)."""

    position: int
    participant: str
    version: int
    topic: str
    recorded_at: str
    record: dict[str, Any]

    @property
    def event_id(self) -> str | None:
        return self.record.get("id")

    @property
    def type(self) -> str | None:
        return self.record.get("type")

    def to_json(self) -> dict[str, Any]:
        """The ``event`` object of a proof document (without ``entry``)."""
        return {
            "position": self.position,
            "event_id": self.event_id,
            "participant": self.participant,
            "type": self.type,
            "recorded_at": self.recorded_at,
            "record": self.record,
        }


def read_entry(entry: bytes, plain: Callable[[bytes], bytes] = bytes) -> EventView:
    """Decode the canonical bytes of one stored event; raises :class:`MalformedEntry`.

    ``plain`` undoes the store's compression or cipher on the state inside
    (:class:`ledger.storage.codec.Codec`); by default the state is read as it is.
    """
    value = _decode(entry)
    if not (isinstance(value, list) and len(value) == 5):
        raise MalformedEntry("an entry is an array of 5 values")
    position, participant, version, topic, state = value
    if not (
        type(position) is int
        and isinstance(participant, str)
        and type(version) is int
        and isinstance(topic, str)
        and isinstance(state, bytes)
    ):
        raise MalformedEntry("an entry is [position, participant, version, topic, state]")
    stored = _decode(plain(state))
    if not isinstance(stored, dict):
        raise MalformedEntry("the stored state is not a map")
    timestamp, record = stored.get("timestamp"), stored.get("record")
    if not isinstance(timestamp, dt.datetime) or not isinstance(record, dict):
        raise MalformedEntry("the stored state needs a timestamp and a record")
    return EventView(position, participant, version, topic, _plain(timestamp), _plain(record))


def _check_event(doc: Mapping[str, Any]) -> tuple[bool, str]:
    """The ``event`` of an inclusion proof is the proven leaf, and says what its bytes say."""
    event = doc["event"]
    if not isinstance(event, Mapping) or not isinstance(event.get("entry"), str):
        return False, "malformed input: 'event' must be an object with the entry as hex"
    try:
        entry = bytes.fromhex(event["entry"])
    except ValueError:
        return False, "malformed input: event 'entry' is not hex"
    if leaf_hash(entry).hex() != str(doc.get("leaf_hash", "")).lower():
        return False, "the event's entry does not hash to the proven leaf: the event was altered"
    try:
        view = read_entry(entry)
    except MalformedEntry as exc:
        return False, f"the event's entry cannot be read: {exc}"
    for key, value in view.to_json().items():
        if key in event and event[key] != value:
            return False, f"the event's {key} is not what its entry holds ({json.dumps(value)[:80]})"
    return True, (
        f"the leaf is event {view.event_id} ({view.type}) of participant {view.participant} "
        f"at position {view.position}, recorded at {view.recorded_at}"
    )


def check_proof(doc: Any, digest: Any | None = None) -> tuple[bool, str]:
    """Check a proof document, alone or against a published ``{"size", "root"}`` digest.

    Returns ``(ok, explanation)``; never raises on malformed input.  See the
    module docstring for what is checked.
    """
    ok, message = verify_proof_document(doc, digest)
    if not ok or not isinstance(doc, Mapping) or doc.get("kind") != "inclusion" or "event" not in doc:
        return ok, message
    try:
        event_ok, detail = _check_event(doc)
    except Exception as exc:  # malformed input must never raise
        event_ok, detail = False, f"malformed input: {type(exc).__name__}"
    return event_ok, f"{message}; {detail}"


def main(argv: list[str]) -> int:
    """``python -m ledger.evidence.proofcheck PROOF.json [DIGEST.json]``: 0 valid, 1 invalid, 2 unreadable."""
    if len(argv) not in (1, 2):
        print("usage: python -m ledger.evidence.proofcheck PROOF.json [DIGEST.json]", file=sys.stderr)
        return 2
    try:
        docs = [json.loads(open(path, encoding="utf-8").read()) for path in argv]  # noqa: SIM115
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok, message = check_proof(docs[0], docs[1] if len(docs) == 2 else None)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
