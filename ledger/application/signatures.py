"""Electronic signatures of participants' records (21 CFR 11.50, 11.70, 11.200; issue #6).

A signature is a :class:`~ledger.domain.events.RecordSigned` event in the participant's
stream.  It names the signer (``user``), the UTC date-time and the meaning
(11.50), and covers the ``(event id, leaf hash)`` of every event of the
participant's stream at signing, signatures excepted (the leaf hash of SPEC
section 5 binds the event's content, position and ``recorded_at``), so it
cannot be moved to other data (11.70).  It is made with the signer's own Ed25519
key, kept in a PEM file encrypted with the signer's passphrase: signing takes
both the key file and the passphrase (11.200), and the ledger checks that the
key is the one registered for the signer.

Key custody (issue 12, item 6): each user makes their own key pair under their
own login (:func:`make_key`, ``key new``), with a passphrase only they know,
and registers its public key (:class:`~ledger.domain.events.KeyRegistered`);
no command makes or writes another person's private key, a key is registered to
one user only, and ``sign`` requires the signer's login to hold the key
registered for it.

:func:`check` re-reads every stored event, recomputes the leaf hashes and
verifies every signature: *invalid* when the signature or a covered hash does
not match (tampering), *superseded* when valid but the participant has events
the signature does not cover (a correction, void or new event recorded after
signing: it no longer covers the current state), else *valid*.  ``verify``
checks them from the events and leaves its seal check reads and recomputes
anyway (:class:`Signed`), not reading them a second time.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.application import AggregateNotFoundError

from ledger.application import access
from ledger.domain.errors import InvalidInput, LedgerError
from ledger.domain.events import MEANINGS, KeyRegistered, Record, RecordSigned, UserRegistered, fill, utc_text
from ledger.domain.participant import EVENT_CLASS, Participant
from ledger.evidence.merkle import leaf_hash
from ledger.storage.seal import canonical_entry

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

DOMAIN = "trial-ledger/signature/v1"
KEY_ACTION = "key new"
MIN_PASSPHRASE = 8
_canonical = msgspec.json.Encoder()


def default_key_file(name: str) -> Path:
    """Where ``key new`` keeps ``name``'s private key (in their own home) unless told otherwise."""
    return Path.home() / ".trial-ledger" / f"{name}.pem"


# -- keys -----------------------------------------------------------------------------------------


def new_key(path: Path, passphrase: str) -> str:
    """Make an Ed25519 key pair, write the private key encrypted with ``passphrase`` to ``path``.

    The file is created (mode 0600), never overwritten.  Returns the public key (hex).
    """
    if len(passphrase) < MIN_PASSPHRASE:
        raise InvalidInput(f"passphrase: at least {MIN_PASSPHRASE} characters")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"key-file: {path} already exists (choose another --key-file)") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return public_hex(key)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _open_key(path: Path, passphrase: str) -> Ed25519PrivateKey | str:
    """The private key, or why it cannot be opened."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"key-file: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode())
    except (ValueError, TypeError):
        return f"cannot open the key in {path}: wrong passphrase or not a private key"
    if not isinstance(key, Ed25519PrivateKey):
        return f"the key in {path} is not an Ed25519 key"
    return key


@dataclass(frozen=True)
class MadeKey:
    """What ``key new`` did: the key registered (event id, public key hex) and where the private key is."""

    user: str
    event_id: str
    public_key: str
    key_file: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "event": self.event_id,
            "public_key": self.public_key,
            "key_file": str(self.key_file),
        }


def make_key(ledger: TrialLedger, user: str | None, path: Path | None, passphrase: str) -> MadeKey:
    """``key new``: the acting user's own key pair, the private key in ``path``, the public key registered.

    ``path`` defaults to :func:`default_key_file` of the acting user.  Refused
    (exit 3, recorded) for a user who is not registered; the key file is
    removed again when the key is not registered.
    """
    owner = access.acting(ledger, user, KEY_ACTION)
    path = path or default_key_file(owner)
    public = new_key(path, passphrase)
    try:
        event_id = register_key(ledger, owner, public)
    except LedgerError:
        path.unlink()
        raise
    return MadeKey(owner, event_id, public, path)


def register_key(ledger: TrialLedger, user: str | None, public_key: str) -> str:
    """Register ``public_key`` as the acting user's own signing key; the event id (issue 12, item 6)."""
    owner = access.acting(ledger, user, KEY_ACTION)
    record = access.checked(KeyRegistered, {"name": owner, "public_key": public_key, "user": owner})

    def attempt() -> str:
        users = access.Registry.load(ledger)
        if users is None or owner not in users.users:
            problem = f"user {owner!r} is not registered: a data manager registers users first (`user add`)"
            access.refuse(ledger, [problem], action=KEY_ACTION, user=owner)
        access.require(ledger, users, owner, KEY_ACTION)  # a deactivated user registers nothing
        holder = next((name for name, key in users.keys.items() if key == public_key), None)
        if holder is not None:
            access.refuse(
                ledger, [f"this key is already registered to {holder}"], action=KEY_ACTION, user=owner
            )
        log = access.Registry.append(users, record, ledger.clock())
        event_id: str = log.pending_events[-1].record.id  # type: ignore[attr-defined]
        ledger.save(log)
        return event_id

    return ledger.write(attempt, action=KEY_ACTION, user=owner)


# -- signing --------------------------------------------------------------------------------------


def message(study: str, record: RecordSigned) -> bytes:
    """The canonical bytes a signature is made over: everything it attests, in a fixed order."""
    signed_at = utc_text(record.signed_at)
    return _canonical.encode(
        [DOMAIN, study, record.participant, record.meaning, record.user, signed_at, record.covers]
    )


def sign(
    ledger: TrialLedger, user: str | None, participant: str, meaning: str, key_file: Path, passphrase: str
) -> RecordSigned:
    """``sign``: sign ``participant``'s record with ``meaning``; the stored signature.

    Refused (exit 3, recorded) when the signer is not registered or not
    permitted, or the key cannot be opened or is not theirs.
    """
    signer = access.acting(ledger, user, f"sign {meaning}")
    if meaning not in MEANINGS:
        raise InvalidInput(f"meaning: expected one of {', '.join(MEANINGS)}")
    action = f"sign {meaning}"
    users = access.Registry.load(ledger)
    member = users.users.get(signer) if users is not None else None
    if member is None:
        problem = f"user {signer!r} is not registered: signing needs a registered user and key"
        access.refuse(ledger, [problem], action=action, user=signer, participant=participant)
    registered = users.keys.get(signer) if users is not None else None
    if registered is None:
        problem = f"{signer} has no registered key: make your own with `trial-ledger key new`"
        access.refuse(ledger, [problem], action=action, user=signer, participant=participant)
    key = _open_key(key_file, passphrase)
    if isinstance(key, str):
        access.refuse(ledger, [key], action=action, user=signer, participant=participant)
    if public_hex(key) != registered:
        problem = f"the key in {key_file} is not the registered key of {signer}"
        access.refuse(ledger, [problem], action=action, user=signer, participant=participant)

    def attempt() -> RecordSigned:
        access.require(ledger, access.Registry.load(ledger), signer, action, participant)
        try:
            aggregate = ledger.repository.get(participant)
        except AggregateNotFoundError:
            aggregate = None
        if not isinstance(aggregate, Participant):
            raise InvalidInput(f"participant: {participant} is not in the ledger")
        seal: Any = ledger.recorder.seal  # type: ignore[attr-defined]
        leaves = seal.participant_leaves(ledger.recorder.datastore, participant)  # type: ignore[attr-defined]
        at = ledger.clock()
        fields = {
            "participant": participant,
            "meaning": meaning,
            "signed_at": at,
            "covers": [(eid, leaf.hex()) for eid, leaf in leaves if eid not in aggregate.signatures],
            "user": signer,
            "site": member.user_site,
            "signature": "0" * 128,  # the draft the signature is made over; message() leaves it out
        }
        draft: RecordSigned = access.checked(RecordSigned, fields)
        record = fill(draft, signature=key.sign(message(ledger.protocol.study, draft)).hex())
        event_id = aggregate.append(record, ledger.protocol, at)
        ledger.save(aggregate)
        return fill(record, id=event_id)

    return ledger.write(attempt, action=action, user=signer)


# -- checking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """One stored signature and what it covers now.

    ``problem`` says why it is invalid (None when the signature and every covered
    hash match); ``not_covered`` lists the participant's events recorded after
    signing, which it does not cover.
    """

    event_id: str
    participant: str
    signer: str
    full_name: str | None
    meaning: str
    signed_at: dt.datetime
    covers: int
    problem: str | None
    not_covered: tuple[str, ...]

    @property
    def status(self) -> str:
        """``invalid``, ``superseded`` (no longer covers the current state) or ``valid``."""
        if self.problem is not None:
            return "invalid"
        return "superseded" if self.not_covered else "valid"

    def to_json(self) -> dict[str, Any]:
        return {
            "signature": self.event_id,
            "participant": self.participant,
            "signer": self.signer,
            "full_name": self.full_name,
            "meaning": self.meaning,
            "signed_at": utc_text(self.signed_at),
            "covers": self.covers,
            "status": self.status,
            "problem": self.problem,
            "not_covered": list(self.not_covered),
        }


def any_signed(ledger: TrialLedger) -> bool:
    """Whether the ledger holds a signature at all (one indexed look-up by topic)."""
    from eventsourcing.utils import get_topic

    from ledger.domain.participant import LEGACY_TOPIC

    topics = (get_topic(EVENT_CLASS[RecordSigned]), f"{LEGACY_TOPIC}.Signed")
    return bool(ledger.notification_log.select(start=1, limit=1, topics=topics))


def check(
    ledger: TrialLedger, known_at: dt.datetime | None = None, participant: str | None = None
) -> list[SignatureCheck]:
    """Verify every signature (of ``participant`` only, if given) against the stored events.

    With ``known_at``, as the ledger stood then: later events neither count as
    not covered nor are checked.  Each signature is checked with the signer and
    key the ``USERS`` stream held when it was made, as the application reads that
    stream (:meth:`~ledger.application.access.Users.admit`: a row another login
    sealed grants nothing, issue 12, item 2).
    """
    signed = Signed(participant)
    decode = ledger.codec.decode
    for n in ledger.notifications():
        state = decode(n.state)
        if known_at is not None and state.timestamp > known_at:
            continue
        record = state.record
        if not signed.take(n.id, str(n.originator_id), record) and record.id is not None:
            leaf = leaf_hash(canonical_entry(n.id, n.originator_id, n.originator_version, n.topic, n.state))
            signed.event(str(n.originator_id), record.id, leaf)
    logins = access.user_logins(ledger)  # after the rows: every row read is sealed by then
    return signed.checks(ledger.protocol.study, logins)


class Signed:
    """What checking the signatures needs from the stored events, taken one by one in ledger order.

    :func:`check` feeds it from the decoded events; ``verify`` from the rows its
    seal check reads anyway (issue 14: the events are read once), decoding only
    the rows of the ``USERS`` stream and the signatures.  Nothing is judged
    before :meth:`checks`, so what was taken from two parts of a ledger apart
    joins in order (:meth:`follow`): ``verify`` reads the halves of a large
    ledger at once.
    """

    USERS = access.Registry.STREAM
    SIGNATURE = RecordSigned.__struct_config__.tag  # type: ignore[attr-defined]

    def __init__(self, participant: str | None = None) -> None:
        self.participant = participant
        self.user_rows: list[tuple[int, Record]] = []  # the ``USERS`` stream, by position
        self.signatures: list[tuple[int, RecordSigned]] = []  # by position
        self.leaves: dict[str, bytes] = {}
        self.streams: dict[str, list[str]] = defaultdict(list)

    def take(self, position: int, stream: str, record: Record) -> bool:
        """Take a row of the ``USERS`` stream or a signature; False for any other record."""
        if stream == self.USERS:
            self.user_rows.append((position, record))
        elif isinstance(record, RecordSigned):
            if self.participant is None or record.participant == self.participant:
                self.signatures.append((position, record))
        else:
            return False
        return True

    def event(self, stream: str, event_id: str, leaf: bytes) -> None:
        """Take any other event of ``stream``: a signature may cover it."""
        self.leaves[event_id] = leaf
        self.streams[stream].append(event_id)

    def follow(self, later: Signed) -> None:
        """Take what ``later`` took from the events after those taken here."""
        self.user_rows += later.user_rows
        self.signatures += later.signatures
        self.leaves.update(later.leaves)
        for stream, event_ids in later.streams.items():
            self.streams[stream] += event_ids

    def checks(self, study: str, logins: Mapping[int, str]) -> list[SignatureCheck]:
        """Every signature taken, checked with the signer and key the ``USERS`` rows before it left.

        ``logins``: :func:`ledger.application.access.user_logins`, read after the rows.
        """
        users, pending = access.Users(), iter(self.user_rows)
        row = next(pending, None)
        checked = []
        for position, record in self.signatures:
            while row is not None and row[0] < position:
                users.admit(row[1], logins.get(row[0]))
                row = next(pending, None)
            signer, stream = record.user or "", self.streams[record.participant]
            member, key = users.users.get(signer), users.keys.get(signer)
            checked.append(_check_one(study, record, member, key, self.leaves, stream))
        return checked


def _check_one(
    study: str,
    record: RecordSigned,
    member: UserRegistered | None,
    key: str | None,
    leaves: dict[str, bytes],
    stream: list[str],
) -> SignatureCheck:
    problem = None
    if member is None:
        problem = f"{record.user} was not a registered user when signing"
    elif key is None:
        problem = f"{record.user} had no registered key when signing"
    else:
        try:
            public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))
            public.verify(bytes.fromhex(record.signature), message(study, record))
        except InvalidSignature:
            problem = f"the signature does not match what it claims to sign with {record.user}'s key"
    for event_id, expected in record.covers:
        if problem is not None:
            break
        if event_id not in leaves:
            problem = f"signed event {event_id} is missing from the ledger"
        elif leaves[event_id].hex() != expected:
            problem = f"signed event {event_id} was changed after signing (hash mismatch)"
    covered = {event_id for event_id, _ in record.covers}
    return SignatureCheck(
        event_id=record.id or "",
        participant=record.participant,
        signer=record.user or "",
        full_name=member.full_name if member else None,
        meaning=record.meaning,
        signed_at=record.signed_at,
        covers=len(record.covers),
        problem=problem,
        not_covered=tuple(event_id for event_id in stream if event_id not in covered),
    )
