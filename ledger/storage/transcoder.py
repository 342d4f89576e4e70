"""MessagePack transcoder for the ledger's domain events (the library's extension point).

The eventsourcing :class:`~eventsourcing.persistence.Mapper` hands the
transcoder an event's state as a dict (``timestamp``, ``record`` and, for the
first event of a stream, ``originator_topic``).  Encoding and decoding are one
msgspec C pass each: the record comes back validated and typed, with no JSON
and no per-field Python work.  Read models use :func:`decode_state` directly on
stored rows, below the Mapper, for rebuilds (SPEC section 4).

A stored event is never refused because today's edge is stricter than the one
that accepted it (issue 11): when the typed decode fails, the state is decoded
again against constraint-free twins of the records and the same record classes
are built from them without re-running any check (:func:`~ledger.domain.events.from_twin`).
The fast path is untouched: the fallback costs only the events that need it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec
from eventsourcing.persistence import Transcoder, Transcoding

from ledger.domain.events import Stored, from_twin, lenient_stored


class StoredState(msgspec.Struct, frozen=True, omit_defaults=True):
    """The bytes in the ``state`` column of one stored event.

    ``class_version`` is the library's: it is stored for event classes whose
    ``class_version`` is above 1, and the Mapper runs their ``upcast_vN_vN+1``
    (docs/decisions.md, schema evolution).
    """

    timestamp: dt.datetime
    record: Stored
    originator_topic: str | None = None
    class_version: int | None = None


class RecordHead(msgspec.Struct, frozen=True):
    """The two fields of a stored record that the seal needs (SPEC section 5)."""

    type: str
    id: str | None = None


class _RawRecord(msgspec.Struct, frozen=True):
    record: msgspec.Raw


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StoredState)
_strict_decode = _decoder.decode


@cache
def _lenient_decode() -> Callable[[bytes], Any]:
    """The decoder of stored states whose record today's edge refuses, made when first needed."""
    state = msgspec.defstruct(
        "LenientState",
        [
            ("timestamp", dt.datetime),
            ("record", lenient_stored()),
            ("originator_topic", str | None, None),
            ("class_version", int | None, None),
        ],
        frozen=True,
    )
    return msgspec.msgpack.Decoder(state).decode


def decode_state(state: bytes) -> StoredState:
    """The stored state, typed; never refused for a constraint that was not there when it was stored."""
    try:
        return _strict_decode(state)
    except msgspec.ValidationError:
        # A state that fits not even the twins (a field whose type changed) is an upcaster's job.
        lenient = _lenient_decode()(state)
        return StoredState(
            timestamp=lenient.timestamp,
            record=from_twin(lenient.record),
            originator_topic=lenient.originator_topic,
            class_version=lenient.class_version,
        )


_raw_decoder = msgspec.msgpack.Decoder(_RawRecord)
_head_decoder = msgspec.msgpack.Decoder(RecordHead)


def record_bytes(state: bytes) -> bytes:
    """The record's own MessagePack bytes inside a stored state, undecoded.

    They are what the encoder makes of the record alone, so hashing them gives
    the record's content hash without building the record.
    """
    return bytes(_raw_decoder.decode(state).record)


def record_head(record: bytes) -> RecordHead:
    """The type and id of a record from its bytes (:func:`record_bytes`), the rest skipped."""
    return _head_decoder.decode(record)


class MsgspecTranscoder(Transcoder):
    """Encodes event state dicts to MessagePack and back, validating on the way in."""

    def encode(self, obj: Any) -> bytes:
        return _encoder.encode(obj)

    def decode(self, data: bytes) -> dict[str, Any]:
        state = decode_state(data)
        fields: dict[str, Any] = {"timestamp": state.timestamp, "record": state.record}
        if state.originator_topic is not None:
            fields["originator_topic"] = state.originator_topic
        if state.class_version is not None:
            fields["class_version"] = state.class_version
        return fields

    def register(self, transcoding: Transcoding) -> None:
        msg = "the ledger's transcoder takes msgspec Structs, not transcodings"
        raise TypeError(msg)
