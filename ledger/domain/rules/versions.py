"""Which protocol version judges a participant (SPEC section 2, protocol versions).

Every protocol parameter comes from the version in force on the participant's
enrollment date, or on the screening date for a participant never enrolled (a
screen failure, or one screened and not yet enrolled).  The ledger records every
adopted version as an event (content hash, version, effective date and the file's
text), so a participant enrolled before an amendment keeps being judged by the
version they were enrolled under, whatever file is on disk today.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger.domain.events import ParticipantEnrolled, ParticipantScreened, ProtocolAdopted
from ledger.domain.protocol import Protocol, parse_protocol
from ledger.domain.rules.corrections import ParticipantHistory


def content_hash(text: bytes) -> str:
    """The SHA-256 of a protocol file's bytes, lowercase hex: what identifies a version."""
    return hashlib.sha256(text).hexdigest()


@dataclass(frozen=True, slots=True)
class AdoptedProtocol:
    """One protocol version as adopted: its parameters, version, effective date and hash."""

    protocol: Protocol
    version: str
    effective: dt.date
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "effective": self.effective.isoformat(), "sha256": self.sha256}


def judged_on(screened: dt.date, enrolled: dt.date | None) -> dt.date:
    """The date whose protocol version judges a participant: enrollment, else screening."""
    return enrolled if enrolled is not None else screened


@dataclass(frozen=True, slots=True)
class ProtocolVersions:
    """The adopted versions, in the order they were recorded (at least one)."""

    adopted: tuple[AdoptedProtocol, ...]

    def __post_init__(self) -> None:
        if not self.adopted:
            raise ValueError("a trial has at least one protocol version")

    def in_force(self, on: dt.date) -> AdoptedProtocol:
        """The version in force on ``on``: the latest effective on or before it.

        Of two versions effective the same day the one recorded later wins (it
        amends the other).  A date before every effective date takes the earliest
        version: data from before the first adoption are judged by the first
        protocol, never by none.
        """
        ordered = sorted(enumerate(self.adopted), key=lambda pair: (pair[1].effective, pair[0]))
        chosen = ordered[0][1]
        for _, version in ordered:
            if version.effective <= on:
                chosen = version
        return chosen

    def for_participant(self, screened: dt.date, enrolled: dt.date | None) -> AdoptedProtocol:
        """The version that judges a participant screened and (perhaps) enrolled on these dates."""
        return self.in_force(judged_on(screened, enrolled))

    def index(self, version: AdoptedProtocol) -> int:
        """Where ``version`` stands among the adopted, in recorded order (a later adoption never moves it)."""
        return next(number for number, adopted in enumerate(self.adopted) if adopted is version)

    @property
    def fingerprint(self) -> str:
        """The SHA-256 of every version's hash, number and effective date, in recorded order, lowercase hex.

        Two sets of versions with one fingerprint judge every participant alike:
        what the read model's summaries were computed under (issue 14).
        """
        text = "\n".join(f"{v.sha256} {v.version} {v.effective.isoformat()}" for v in self.adopted)
        return content_hash(text.encode("utf-8"))

    @classmethod
    def only(
        cls, protocol: Protocol, version: str = "unversioned", sha256: str = "0" * 64
    ) -> ProtocolVersions:
        """One version in force on every date (a trial that never amended its protocol)."""
        return cls((AdoptedProtocol(protocol, version, dt.date.min, sha256),))


def judging_versions(
    adoptions: Iterable[tuple[str, ProtocolAdopted]], configured: AdoptedProtocol
) -> ProtocolVersions:
    """The versions that judge participants, from the ledger's ``ProtocolAdopted`` events (event id, record).

    With none adopted (a ledger made before versions were recorded, or read as
    known before the first adoption), ``configured``, the file the ledger is
    opened with, is the one version.
    """
    versions = tuple(
        AdoptedProtocol(_parsed(record.content, event_id), record.version, record.effective, record.sha256)
        for event_id, record in adoptions
    )
    return ProtocolVersions(versions or (configured,))


def _parsed(content: str, event_id: str) -> Protocol:
    """The parameters of an adopted version's text, parsed once per process (every write reads them)."""
    parsed = _PARSED.get(content)
    if parsed is None:
        parsed = _PARSED[content] = parse_protocol(content.encode("utf-8"), event_id)
    return parsed


# The adopted versions' parameters by their text: a process parses each text once.
_PARSED: dict[str, Protocol] = {}


def judging_version(
    history: ParticipantHistory, as_of: dt.date, versions: ProtocolVersions
) -> AdoptedProtocol | None:
    """The version that judges a participant on clinical date ``as_of``; None if not yet screened.

    The screening and enrollment that count are those of the status
    (:func:`~ledger.domain.rules.status.summarise`): the latest screening and the
    first enrollment effective by ``as_of``.
    """
    screenings = history.as_of(ParticipantScreened, as_of)
    if not screenings:
        return None
    enrollments = history.as_of(ParticipantEnrolled, as_of)
    enrolled = enrollments[0].effective if enrollments else None
    return versions.for_participant(screenings[-1].effective, enrolled)
