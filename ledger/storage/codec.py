"""Stored state bytes and what they say, through the library's mapper pipeline (issue 13).

The eventsourcing :class:`~eventsourcing.persistence.Mapper` turns an event's
state into stored bytes in three steps: the transcoder
(:class:`~ledger.storage.transcoder.MsgspecTranscoder`, MessagePack), then the
compressor (``COMPRESSOR_TOPIC``), then the cipher (``CIPHER_TOPIC`` /
``CIPHER_KEY``).  Every path that reads stored bytes itself, below the library's
notification log and repository (``entries()``, ``verify``, ``audit``, signatures,
proofs, the seal, the read model), undoes the last two steps here, the same way
the mapper does, so that turning compression or a cipher on keeps them working.

What the seal covers is the bytes as stored (after compression and cipher):
leaf and chain hashes are computed on them unchanged.  The content hash that
makes a retried line "the same content" is computed on the record's transcoded
bytes (:meth:`Codec.record`), which do not depend on either setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from eventsourcing.persistence import Cipher, Compressor, Mapper

from ledger.storage.transcoder import StoredState, decode_state, record_bytes


class StateCodec(Protocol):
    """What a read path needs to know about stored state bytes."""

    # True when stored bytes are the transcoder's own (no cipher, no compressor).
    transparent: bool
    # The timestamp and validated record of stored bytes (an attribute: the fastest callable).
    decode: Callable[[bytes], StoredState]

    def plain(self, state: bytes) -> bytes:
        """The transcoder's bytes inside stored bytes (deciphered, decompressed)."""
        ...

    def record(self, state: bytes) -> bytes:
        """The record's own MessagePack bytes inside stored bytes (what its content hash covers)."""
        ...


class Codec:
    """:class:`StateCodec` for a cipher and a compressor (either may be None, as in the mapper)."""

    def __init__(self, cipher: Cipher | None = None, compressor: Compressor | None = None) -> None:
        self.cipher = cipher
        self.compressor = compressor
        # Without either, stored bytes are the transcoder's: the hot paths skip every step.
        self.transparent = cipher is None and compressor is None
        self.decode: Callable[[bytes], StoredState] = (
            decode_state if self.transparent else lambda state: decode_state(self.plain(state))
        )

    @classmethod
    def of(cls, mapper: Mapper[Any]) -> Codec:
        """The codec of an application's mapper."""
        return cls(mapper.cipher, mapper.compressor)

    def plain(self, state: bytes) -> bytes:
        if self.cipher is not None:
            state = self.cipher.decrypt(state)
        if self.compressor is not None:
            state = self.compressor.decompress(state)
        return state

    def record(self, state: bytes) -> bytes:
        return record_bytes(self.plain(state))


class CodecFactory:
    """Mixin of the ledger's infrastructure factories: the recorder's seal reads with the mapper's codec."""

    def application_recorder(self) -> Any:
        recorder = super().application_recorder()  # type: ignore[misc]
        recorder.seal.codec = Codec(self.cipher(), self.compressor())  # type: ignore[attr-defined]
        return recorder
