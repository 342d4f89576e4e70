"""MessagePack transcoder for the ledger's domain events (the library's extension point).

The eventsourcing :class:`~eventsourcing.persistence.Mapper` hands the
transcoder an event's state as a dict (``timestamp``, ``record`` and, for the
first event of a stream, ``originator_topic``).  Encoding and decoding are one
msgspec C pass each: the record comes back validated and typed, with no JSON
and no per-field Python work.  Read models use :func:`decode_state` directly on
stored rows, below the Mapper, for rebuilds (SPEC section 4).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from eventsourcing.persistence import Transcoder, Transcoding

from ledger.domain.events import Stored


class StoredState(msgspec.Struct, frozen=True, omit_defaults=True):
    """The bytes in the ``state`` column of one stored event."""

    timestamp: dt.datetime
    record: Stored
    originator_topic: str | None = None


class RecordHead(msgspec.Struct, frozen=True):
    """The two fields of a stored record that the seal needs (SPEC section 5)."""

    type: str
    id: str | None = None


class _RawRecord(msgspec.Struct, frozen=True):
    record: msgspec.Raw


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(StoredState)
decode_state = _decoder.decode
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
        state = _decoder.decode(data)
        fields: dict[str, Any] = {"timestamp": state.timestamp, "record": state.record}
        if state.originator_topic is not None:
            fields["originator_topic"] = state.originator_topic
        return fields

    def register(self, transcoding: Transcoding) -> None:
        msg = "the ledger's transcoder takes msgspec Structs, not transcodings"
        raise TypeError(msg)
