"""Protocol versions as events: ``init`` adopts, ``protocol adopt``, ``protocol show`` (SPEC section 2).

Every adopted version is a :class:`~ledger.domain.events.ProtocolAdopted` event of
the ledger's own ``PROTOCOL`` stream (:class:`~ledger.application.access.ProtocolLog`),
sealed like every other event: the file's text, its SHA-256, its version and the
date it takes effect.  The rules then judge each participant under the version in
force on their enrollment date (screening date if never enrolled), read from the
ledger, never from whatever file is on disk (:mod:`ledger.domain.rules.versions`).

A ledger made before versions were recorded holds none: there the protocol file
the ledger is opened with (``--protocol``, else the shipped one) is the only
version, in force from the first day, exactly as before.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.application.access import ProtocolLog, Registry, acting, checked, require
from ledger.domain.errors import InvalidInput
from ledger.domain.events import ProtocolAdopted, utc_text
from ledger.domain.protocol import Protocol, parse_protocol
from ledger.domain.rules.versions import AdoptedProtocol, ProtocolVersions, content_hash, judging_versions

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

MAX_PROTOCOL_BYTES = 65_536


@dataclass(frozen=True)
class Adoption:
    """What ``protocol adopt`` did: the event id, or the id of the same version already adopted."""

    event_id: str
    version: str
    effective: dt.date
    sha256: str
    already: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "version": self.version,
            "effective": self.effective.isoformat(),
            "sha256": self.sha256,
            "already_adopted": self.already,
        }


@dataclass(frozen=True)
class VersionEntry:
    """One adopted version as ``protocol show`` lists it."""

    event_id: str
    record: ProtocolAdopted
    recorded_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "event_id": self.event_id,
            "study": r.study,
            "version": r.version,
            "effective": r.effective.isoformat(),
            "sha256": r.sha256,
            "recorded_at": utc_text(self.recorded_at),
            "user": r.user,
            "reason": r.reason,
        }


def read_protocol_file(path: str, field: str) -> tuple[bytes, Protocol]:
    """The bytes and parameters of a protocol file; :class:`InvalidInput` naming ``field``."""
    try:
        with Path(path).open("rb") as file:
            text = file.read(MAX_PROTOCOL_BYTES + 1)  # never more: a device or a huge file is refused
    except OSError as exc:
        raise InvalidInput(f"{field}: cannot read {path}: {exc.strerror or exc}") from None
    if len(text) > MAX_PROTOCOL_BYTES:
        raise InvalidInput(f"{field}: protocol file {path} is larger than {MAX_PROTOCOL_BYTES} bytes")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{field}: protocol file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return text, parse_protocol(text, path)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}") from None


def adopt(
    ledger: TrialLedger, user: str | None, text: bytes, protocol: Protocol, effective: dt.date, reason: str
) -> Adoption:
    """Adopt a protocol version from ``effective`` on (data managers; SPEC section 2).

    The file must name its ``version`` and be the same study.  Adopting the same
    file with the same effective date again is a no-op that returns the stored
    event (a retry is safe); the same version number with other content is
    refused, since a version names one text.
    """
    actor = acting(ledger, user, "protocol adopt")
    if protocol.version is None:
        raise InvalidInput("version: the protocol file must name its version to be adopted")
    sha256 = content_hash(text)
    record: ProtocolAdopted = checked(
        ProtocolAdopted,
        {
            "study": protocol.study,
            "version": protocol.version,
            "effective": effective,
            "sha256": sha256,
            "content": text.decode("utf-8"),
            "reason": reason,
            "user": actor,
        },
    )

    def attempt() -> Adoption:
        require(ledger, Registry.load(ledger), actor, "protocol adopt")
        stored = adopted_versions(ledger)
        for entry in stored:
            same = entry.record
            if same.study != record.study:
                raise InvalidInput(f"study: the ledger's protocol is {same.study}, not {record.study}")
            if same.sha256 == sha256 and same.effective == effective:
                return Adoption(entry.event_id, same.version, effective, sha256, already=True)
            if same.version == record.version and same.sha256 != sha256:
                raise InvalidInput(
                    f"version: {record.version} is already adopted ({entry.event_id}) with other content;"
                    " give the amended file a new version"
                )
        log = ProtocolLog.append(ProtocolLog.load(ledger), record, ledger.clock())
        event_id: str = log.pending_events[-1].record.id  # type: ignore[attr-defined]
        ledger.save(log)
        return Adoption(event_id, record.version, effective, sha256, already=False)

    return ledger.write(attempt, action="protocol adopt", user=actor)


def adopted_versions(ledger: TrialLedger, known_at: dt.datetime | None = None) -> list[VersionEntry]:
    """The versions adopted in the ledger (recorded by ``known_at``), in recorded order."""
    found = []
    for event in ledger.repository.event_store.get(ProtocolLog.STREAM):
        record = event.record  # type: ignore[attr-defined]
        if known_at is None or event.timestamp <= known_at:
            found.append(VersionEntry(record.id or "", record, event.timestamp))
    return found


def protocol_versions(ledger: TrialLedger, known_at: dt.datetime | None = None) -> ProtocolVersions:
    """The versions that judge participants, as known at ``known_at``.

    With none adopted (a ledger made before versions were recorded, or read as
    known before the first adoption), the file the ledger was opened with is the
    one version, in force from the first day.
    """
    adoptions = ((e.event_id, e.record) for e in adopted_versions(ledger, known_at))
    return judging_versions(adoptions, configured_version(ledger.protocol, ledger.protocol_text))


def configured_version(protocol: Protocol, text: bytes) -> AdoptedProtocol:
    """The file a ledger is opened with, as the one version of a ledger that has adopted none."""
    return AdoptedProtocol(protocol, protocol.version or "unversioned", dt.date.min, content_hash(text))


def adopt_at_init(ledger: TrialLedger, user: str | None) -> Adoption | None:
    """``init``: adopt the protocol file the ledger is opened with, once (SPEC section 2).

    A ledger that already holds a version is left as it is (``init`` may be run
    again); the file takes effect from its own ``effective`` date, else from the
    first day.
    """
    if adopted_versions(ledger):
        return None
    protocol = ledger.protocol
    effective = protocol.effective or dt.date.min
    return adopt(ledger, user, ledger.protocol_text, protocol, effective, "adopted by init")
