"""``verify`` and ``digest``: the ledger's tamper evidence, recomputed (SPEC sections 5 and 6).

What is sealed (:mod:`ledger.storage.seal`): for each stored event, in the same
transaction as its insert, a ``ledger_entries`` row holding its position, event
id, participant (the stream), content hash (SHA-256 of the record's MessagePack
bytes as stored), the RFC 6962 leaf hash of its canonical bytes
(:func:`ledger.storage.seal.canonical_entry`: position, originator id, version, topic
and the stored MessagePack state) and the chain hash ``sha256(previous chain ||
leaf)``; and in ``ledger_meta`` the Merkle frontier (the tree head: size and
root) and the last chain hash (a ``lock`` row kept there by older versions is
not read: the lock is what the sealed events say).

:func:`verify` trusts none of that.  It streams the stored events table
(``stored_events`` in SQLite, ``trialledger_events`` in PostgreSQL) in ledger
order, joined with ``ledger_entries`` by position, in big batches, in one
snapshot; recomputes every leaf, the chain and the Merkle tree from the events
alone; compares row by row; and names the first position that does not match
(``first_bad``: position, the event id sealed there when one is known, and the
problem):

- an event modified, or moved to another position (the position is inside its
  leaf), or swapped with another: its leaf differs from the sealed one;
- an event deleted from the events table only: its ledger entry has no event
  (found where the chain breaks, or by counting the entries at the end; an
  entry forged where no event ever was is found the same way);
- an event deleted from both tables: the next event's chain hash no longer
  follows (the chain covers every earlier leaf), or, at the tail, the tree head
  in ``ledger_meta`` seals more events than are stored (truncation);
- an event inserted without a seal: it has no ledger entry; inserted with a
  forged entry in the middle: the chain of the next entry breaks; appended at
  the end with an entry: the tree head seals fewer events than are stored;
- a ``ledger_entries`` row edited (leaf, chain, event id, participant or
  content hash): it no longer matches what is recomputed from its event;
- ``ledger_meta`` edited: the recomputed frontier or chain differs (no event
  is at fault: ``first_bad`` has a null position);
- bytes that are not a ledger event at all, even with every hash rewritten;
- an event sealed while the ledger was locked (issue 11, item 7): read in
  ledger order, the ``TRIAL`` stream's lock and unlock say when the ledger was
  locked, and nothing but the unlock and the records of refused attempts (in
  the ``REFUSALS`` stream) may follow a lock; whatever does (a cache
  of the lock opened by hand, an event forged between a lock and its unlock,
  even with every hash rewritten) is named.

What it cannot catch on its own: an attacker who edits both tables
consistently - rewrites an event, recomputes every later leaf and chain hash
and the frontier - leaves a store that is internally coherent.  Only a tree
head published earlier and kept outside the database catches that:
``verify --digest FILE`` recomputes the root of the first ``size`` events and
requires it to equal the published root (the old tree must be a prefix of
today's: what a consistency proof shows, checked here on the recomputed
leaves themselves).  Likewise a truncation with a rewritten head is caught only
by a digest published before it.  A forged event appended at the end and fully
sealed is indistinguishable from a legitimate append: digests protect the past,
not the future (its user and time show in ``audit``).  When only the digest
shows a rewrite, nothing in the store says which event changed, so
``first_bad`` has a null position.

Leaf indexes of the tree are 0-based ranks in ledger order.  Positions are
the store's notification ids: consecutive in SQLite, but PostgreSQL's sequence
can skip a number when an insert is rolled back, so a gap alone is never
called tampering; a missing event shows as a broken chain or a missing seal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ledger.application.forked import Forked
from ledger.domain.errors import InvalidInput, LedgerError
from ledger.evidence.merkle import EMPTY_ROOT, CompactRange, Frontier
from ledger.storage.codec import StateCodec
from ledger.storage.scan import LAST, SealedRow, Snapshot, snapshot
from ledger.storage.seal import GENESIS, TRIAL_STREAM, lock_change, lock_exempt
from ledger.storage.transcoder import record_head

if TYPE_CHECKING:
    from ledger.application.signatures import Signed
    from ledger.application.trial_ledger import TrialLedger

# Rows a query (measured): SQLite runs best with batches that stay in the CPU
# cache, PostgreSQL with fewer round trips.
BATCH_SQLITE = 2_000
BATCH_POSTGRES = 20_000
# From this many events on, ``verify``'s further checks run beside the seal, each in a process of
# its own (issue 14): below it, forking and opening a ledger cost more than they save.
BESIDE_FROM = 50_000
_DELETED = "this ledger entry has no stored event: the event was deleted (or the entry forged)"


class TamperDetected(LedgerError):
    """The store does not match its own seal (exit 1, SPEC section 6)."""

    exit_code = 1


@dataclass(frozen=True)
class Digest:
    """A tree head: the number of events and the Merkle root (SPEC section 6, ``digest``)."""

    size: int
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "root": self.root.hex()}

    @classmethod
    def from_json(cls, data: Any, source: str = "digest") -> Digest:
        """Read ``{"size", "root"}``; raises :class:`InvalidInput` naming the field."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{source}: not a JSON object with size and root")
        size, root = data.get("size"), data.get("root")
        if type(size) is not int or size < 0:
            raise InvalidInput(f"{source}: size: must be a non-negative integer, got {size!r}")
        if not isinstance(root, str) or len(root) != 64:
            raise InvalidInput(f"{source}: root: must be 64 hex digits")
        try:
            return cls(size, bytes.fromhex(root))
        except ValueError:
            raise InvalidInput(f"{source}: root: must be 64 hex digits") from None

    @classmethod
    def load(cls, path: str | Path) -> Digest:
        """Read a digest file written by ``digest --out``."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"digest: cannot read {path}: {exc}") from None
        return cls.from_json(data, f"digest {path}")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")


@dataclass(frozen=True)
class Mismatch:
    """The first thing that does not match: a position and event id where one is known."""

    position: int | None
    event_id: str | None
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"position": self.position, "event_id": self.event_id, "problem": self.problem}


@dataclass(frozen=True)
class Finding:
    """What one further check of ``verify`` found wrong, after the seal matched (issue 13).

    ``check`` names it and is the JSON key of ``details``; ``first_bad`` is the
    first thing it found; ``lines`` say it in words, one problem a line.
    """

    check: str
    first_bad: Mismatch
    details: Any
    lines: tuple[str, ...]


# A further check of ``verify``: None when it finds nothing wrong.
Check = Callable[["TrialLedger"], Finding | None]


@dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify` (SPEC section 6: ``{"ok", "size", "first_bad"}``).

    ``size`` is the number of events stored; ``digest`` the result of the check
    against a published digest, when one was given (``consistent`` is None when
    the scan stopped before reaching its size).  ``first_bad`` is the seal's
    first mismatch; ``findings`` what the further checks of
    :func:`verify_ledger` found once the seal matched (each makes ``ok`` false).
    """

    ok: bool
    size: int
    first_bad: Mismatch | None
    root: bytes | None = None
    published: Digest | None = None
    consistent: bool | None = None
    findings: tuple[Finding, ...] = ()

    @property
    def sealed(self) -> bool:
        """Whether the events match their seal (and the published digest, if any)."""
        return self.first_bad is None

    def with_findings(self, findings: Sequence[Finding]) -> Verdict:
        return replace(self, ok=self.ok and not findings, findings=(*self.findings, *findings))

    def to_json(self) -> dict[str, Any]:
        first_bad = self.first_bad or (self.findings[0].first_bad if self.findings else None)
        data: dict[str, Any] = {
            "ok": self.ok,
            "size": self.size,
            "first_bad": None if first_bad is None else first_bad.to_json(),
        }
        if self.published is not None:
            data["digest"] = {**self.published.to_json(), "consistent": self.consistent}
        for finding in self.findings:
            data[finding.check] = finding.details
        return data


class _Found(Exception):
    def __init__(self, mismatch: Mismatch) -> None:
        self.mismatch = mismatch


class _Suspect(Exception):
    """A row that does not match its seal: the scan stops, then :meth:`_Scan._diagnose` says why."""

    args: tuple[SealedRow, bytes, bytes]  # the row, its recomputed leaf, the chain before it


def _locked(position: int, event_id: str | None, locked_at: int) -> Mismatch:
    """An event sealed at ``position`` while the lock sealed at ``locked_at`` was in force."""
    return Mismatch(
        position,
        event_id,
        f"this event was sealed while the ledger was locked (locked at position {locked_at};"
        " only the unlock and records of refused attempts may follow): the lock was bypassed",
    )


class _RecordId(msgspec.Struct):
    id: str | None = None


class _RecordType(msgspec.Struct):
    type: Any = None


class _State(msgspec.Struct):
    timestamp: msgspec.Raw  # not decoded: Raw is the fastest way past it
    record: msgspec.Raw


_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(_State).decode
_decode_id = msgspec.msgpack.Decoder(_RecordId).decode
_decode_type = msgspec.msgpack.Decoder(_RecordType).decode


def _stored_id(state: bytes, codec: StateCodec) -> str | None:
    """The event id inside a stored state, if it can be read at all."""
    try:
        return _decode_id(_decode_state(codec.plain(state)).record).id
    except Exception:  # whatever the bytes are (not deciphered, not decompressed): no id
        return None


def read_head(snap: Snapshot) -> tuple[Frontier | None, bytes | None]:
    """The tree head and chain hash that ``ledger_meta`` holds (None where absent or unreadable)."""
    meta = snap.meta()
    frontier: Frontier | None = None
    if "frontier" in meta:
        try:
            frontier = Frontier.from_bytes(meta["frontier"])
        except ValueError:
            frontier = None
    return frontier, meta.get("chain")


def current_digest(ledger: TrialLedger) -> Digest:
    """The store's tree head as sealed in ``ledger_meta`` (``digest``; O(1), nothing recomputed).

    Publish it only after a clean ``verify``: it is what the store says.
    """
    with snapshot(ledger) as snap:
        frontier, _ = read_head(snap)
        if frontier is None:
            if snap.event_count():
                raise TamperDetected("digest: ledger_meta has no readable tree head; run verify")
            return Digest(0, EMPTY_ROOT)
        return Digest(frontier.size, frontier.root())


def invalid_signatures(ledger: TrialLedger, signed: Signed | None = None) -> Finding | None:
    """Electronic signatures that no longer verify (SPEC section 5, Part 11.70 linking).

    ``signed`` is what :func:`verify` took from the events while it read them for
    the seal; without it, the events are read again.
    """
    from ledger.application import access
    from ledger.application.signatures import any_signed, check

    if signed is not None:
        checks = signed.checks(ledger.protocol.study, access.user_logins(ledger))
    elif any_signed(ledger):
        checks = check(ledger)
    else:
        return None
    invalid = [c for c in checks if c.status == "invalid"]
    if not invalid:
        return None
    first = invalid[0]
    return Finding(
        "signatures",
        Mismatch(None, first.event_id, first.problem or "invalid signature"),
        {"invalid": [c.to_json() for c in invalid]},
        tuple(f"INVALID signature {c.event_id} of {c.participant}: {c.problem}" for c in invalid),
    )


MAX_NAMED = 50  # unauthorized events listed in ``verify --json`` (the count says how many in all)


def unauthorized_appends(ledger: TrialLedger) -> Finding | None:
    """Events appended by a user without a role allowing them at that moment (issue 12, item 8).

    The authorization of every sealed event, replayed in ledger order, and on
    PostgreSQL the login that sealed it against the user it names
    (:func:`ledger.application.access.unauthorized`); a ledger that never
    registered a user was open throughout, and is not read again.
    """
    from ledger.application import access

    if access.Registry.load(ledger) is None:
        return None
    found = []
    count = 0
    for entry, reason in access.unauthorized(ledger.entries(), ledger.appended_by()):
        count += 1
        if count <= MAX_NAMED:
            found.append((entry, reason))
    if not found:
        return None
    first, why = found[0]
    rows = [
        {
            "position": e.position,
            "event_id": e.record.id,
            "type": e.record.type,
            "user": e.record.user,
            "reason": r,
        }
        for e, r in found
    ]
    return Finding(
        "authorization",
        Mismatch(first.position, first.record.id, f"appended without permission: {why}"),
        {"unauthorized": rows, "count": count},
        tuple(
            f"UNAUTHORIZED {row['type']} {row['event_id']} at position {row['position']}: {row['reason']}"
            for row in rows
        ),
    )


def verify_ledger(
    ledger: TrialLedger, published: Digest | None = None, checks: Sequence[Check] = ()
) -> Verdict:
    """The ``verify`` use case: the seal (:func:`verify`), then signatures, authorization and ``checks``.

    The further checks count only on a ledger whose events match their seal (a
    tampered store has nothing else worth checking); every one that finds a
    problem adds its :class:`Finding` and makes the verdict fail (exit 1).

    Issue 14: the signatures are checked from the rows the seal reads anyway.  On
    a ledger of :data:`BESIDE_FROM` events or more, the authorization replay and
    ``checks``, which read the events again, each run in a process of their own
    (:mod:`ledger.application.forked`) while the seal is recomputed, and are
    stopped if it does not match; on a smaller one they run after it, here.
    """
    from ledger.application.signatures import Signed, any_signed

    signed = Signed() if any_signed(ledger) else None
    further: tuple[Check, ...] = (unauthorized_appends, *checks)
    beside = (ledger.recorder.max_notification_id() or 0) >= BESIDE_FROM
    running = [Forked(ledger, check) for check in further] if beside else []
    try:
        verdict = verify(ledger, published, signed=signed)
        if not verdict.ok:
            return verdict
        answers = [work.result() for work in running] if beside else [check(ledger) for check in further]
    finally:
        for work in running:
            work.cancel()  # those whose answer was not taken: the seal did not match, or an error
    found = [finding for finding in (invalid_signatures(ledger, signed), *answers) if finding is not None]
    return verdict.with_findings(found)


def verify(
    ledger: TrialLedger,
    published: Digest | None = None,
    batch: int | None = None,
    *,
    signed: Signed | None = None,
) -> Verdict:
    """Recompute leaves, chain and tree from ``stored_events`` and compare (SPEC section 5).

    Streams the store once in ledger order; memory is O(batch).  With
    ``published``, also checks that the tree it describes is a prefix of the
    tree recomputed today.  Never trusts ``ledger_entries`` or ``ledger_meta``.
    With ``signed``, every event read is also taken into it, for the signatures'
    check (its leaves are the ones recomputed here).

    On PostgreSQL, a ledger of :data:`BESIDE_FROM` events or more is recomputed
    in two halves at once (issue 14): a child process (:mod:`ledger.application.forked`)
    takes the first, in the same snapshot (exported to it), while this one takes
    the second from the chain hash sealed where the first ends; the halves then
    join (:meth:`_Scan.join`) into the verdict one pass would give.
    """
    with snapshot(ledger) as snap:
        size = batch or (BATCH_POSTGRES if snap.tables.postgres else BATCH_SQLITE)
        half = _half(snap)
        exported = None if half is None else snap.export()
        if half is None or exported is None:
            return _Scan(snap, published, ledger.codec, signed).run(size)
        from ledger.application.signatures import Signed

        first = Forked(ledger, partial(_first_half, exported, half, published, size, signed is not None))
        try:
            second = _Scan(
                snap, published, ledger.codec, None if signed is None else Signed(), snap.rank(half), half
            )
            second.scan(size)
            return second.join(first.result(), signed)
        finally:
            first.cancel()  # when the second half raised: the first's answer is not wanted


def _half(snap: Snapshot) -> int | None:
    """The last position of the first half, when the ledger is worth recomputing in two halves at once."""
    first, last = snap.positions()
    if not snap.tables.postgres or last - first + 1 < BESIDE_FROM:
        return None
    return (first + last) // 2


def _first_half(
    exported: str, half: int, published: Digest | None, batch: int, signing: bool, ledger: TrialLedger
) -> _Part:
    """In a child: the scan of the events up to position ``half``, in the snapshot ``exported``."""
    from ledger.application.signatures import Signed

    with snapshot(ledger, exported) as snap:
        scan = _Scan(snap, published, ledger.codec, Signed() if signing else None, upto=half)
        scan.scan(batch)
        return scan.part()


@dataclass(frozen=True)
class _Part:
    """What the scan of the first half found and leaves behind (it comes back pickled from its process)."""

    mismatch: Mismatch | None
    tree: Frontier
    chain: bytes
    last: int
    locked_at: int | None
    beyond_head: tuple[int, str | None] | None
    published_at: Frontier | None
    signed: Signed | None


class _Scan:
    """One pass of :func:`verify` over a snapshot: the whole ledger, or one half of it.

    A half that does not start at the first event starts from the chain hash
    sealed before it (``chain``) and the number of events before it (``rank``),
    grows a :class:`CompactRange` of the tree, and cannot know whether the
    ledger is locked where it starts: it notes the first event that is not a
    record of a refused attempt (:attr:`opening`), which :meth:`join` judges.
    """

    def __init__(
        self,
        snap: Snapshot,
        published: Digest | None,
        codec: StateCodec,
        signed: Signed | None = None,
        rank: int = 0,
        after: int = 0,
        upto: int = LAST,
    ) -> None:
        self.snap = snap
        self.codec = codec
        self.signed = signed
        self.published = published
        self.after, self.upto = after, upto
        self.size = rank  # events recomputed, counting those before this half
        self.tree: Frontier | CompactRange = CompactRange(rank) if rank else Frontier()
        self.chain = (snap.chain_at(after) or GENESIS) if after else GENESIS
        self.last = 0  # position of the last event that matched
        self.head, self.head_chain = read_head(snap)
        self.beyond_head: tuple[int, str | None] | None = None  # the first event beyond the head
        # The tree as it stood at the published size (an empty one for a digest of no event).
        self.published_at: Frontier | CompactRange | None = (
            Frontier() if published and published.size == 0 and not rank else None
        )
        self.locked_at: int | None = None  # position of the lock in force, in ledger order
        # A half that starts further on: the first event that is not a refused attempt's record,
        # and whether it unlocks (what a lock in force before the half would make of it).
        self.watching = bool(after)
        self.opening: tuple[int, str, bool] | None = None
        self.mismatch: Mismatch | None = None

    def run(self, batch: int) -> Verdict:
        """The whole ledger: scan, then what only the end can tell."""
        if self.scan(batch) is None:
            self._end()
        return self._verdict(self.mismatch)

    def scan(self, batch: int) -> Mismatch | None:
        """Recompute every event of this half; the first mismatch (None: all matched)."""
        try:
            # Closed before anything else is asked of the snapshot: a stream may be open on it.
            with closing(self.snap.sealed_events(batch, self.after, self.upto)) as batches:
                for rows in batches:
                    self._batch(rows)
        except _Suspect as suspect:
            self.mismatch = self._diagnose(*suspect.args)
        except _Found as found:
            self.mismatch = found.mismatch
        return self.mismatch

    def part(self) -> _Part:
        """What the scan of a first half leaves for :meth:`join`."""
        assert isinstance(self.tree, Frontier) and not isinstance(self.published_at, CompactRange)
        return _Part(
            self.mismatch,
            self.tree,
            self.chain,
            self.last,
            self.locked_at,
            self.beyond_head,
            self.published_at,
            self.signed,
        )

    def join(self, first: _Part, signed: Signed | None) -> Verdict:
        """This second half after the ``first``: the verdict of the whole ledger, as one pass gives it.

        The first half's mismatch comes first; then the first event of this half
        that is neither an unlock nor a refused attempt's record, when the first
        half ended locked (noted as the scan went, so it comes before anything
        this half stopped at); then this half's own mismatch; then the ends, on
        the joined tree.
        """
        if signed is not None:
            assert first.signed is not None and self.signed is not None
            signed.follow(first.signed)
            signed.follow(self.signed)
        mismatch = first.mismatch
        if mismatch is None and first.locked_at is not None and self.opening is not None:
            position, event_id, unlocks = self.opening
            if not unlocks:
                mismatch = _locked(position, event_id, first.locked_at)
        mismatch = mismatch or self.mismatch
        if mismatch is not None:
            return self._verdict(mismatch)
        assert isinstance(self.tree, CompactRange)
        tree = first.tree.copy()
        tree.extend_range(self.tree)
        self.tree = tree
        if isinstance(self.published_at, CompactRange):
            published_at = first.tree.copy()
            published_at.extend_range(self.published_at)
            self.published_at = published_at
        self.published_at = first.published_at or self.published_at
        self.beyond_head = first.beyond_head or self.beyond_head
        self.last = self.last or first.last
        self._end()
        return self._verdict(self.mismatch)

    def _end(self) -> None:
        """The ends of a whole ledger: entries without events, the head, the published digest."""
        try:
            self._tail()
        except _Found as found:
            self.mismatch = found.mismatch
            return
        self.mismatch = self._published_problem()

    def _verdict(self, mismatch: Mismatch | None) -> Verdict:
        ok = mismatch is None
        size = self.size if ok else self.snap.event_count()
        consistent = None
        if self.published is not None and isinstance(self.published_at, Frontier):
            consistent = self.published_at.root() == self.published.root
        root = self.tree.root() if ok and isinstance(self.tree, Frontier) else None
        return Verdict(ok, size, mismatch, root, self.published, consistent)

    def _batch(self, rows: list[SealedRow]) -> None:
        """The hot loop: recompute and compare one batch (about 3 microseconds an event)."""
        sha = hashlib.sha256
        pack = _encode  # the encoder of ledger.storage.seal.canonical_entry, called without a wrapper
        decode_state, decode_id = _decode_state, _decode_id
        plain = None if self.codec.transparent else self.codec.plain  # stored bytes as the mapper wrote them
        signed = self.signed
        chain = self.chain
        leaves = []
        for row in rows:
            position, originator, version, topic, state, event_id, participant, content, leaf_, chain_ = row
            leaf = sha(b"\x00" + pack((position, originator, version, topic, state))).digest()
            previous = chain
            chain = sha(previous + leaf).digest()
            if leaf != leaf_ or chain != chain_ or originator != participant:
                raise _Suspect(row, leaf, previous)
            try:
                record = decode_state(state if plain is None else plain(state)).record
                same = decode_id(record).id == event_id and sha(record).digest() == content
            except Exception:  # not a readable ledger event (or not deciphered): diagnosed below
                same = False
            if not same:
                raise _Suspect(row, leaf, previous)
            if self.watching:
                self._watch(position, originator, event_id, record)  # type: ignore[arg-type]
            if self.locked_at is not None or originator == TRIAL_STREAM:
                self._follow_lock(position, originator, event_id, record)  # type: ignore[arg-type]
            if signed is not None:
                self._take_signing(position, originator, event_id, leaf, record, state)  # type: ignore[arg-type]
            leaves.append(leaf)
        self.chain = chain
        self.last = rows[-1][0]
        self._extend(leaves, rows)

    def _take_signing(
        self, position: int, stream: str, event_id: str, leaf: bytes, record: bytes, state: bytes
    ) -> None:
        """Take one sealed event into :attr:`signed`, decoding it whole only if the signatures need it."""
        signed = self.signed
        assert signed is not None
        if stream == signed.USERS or _decode_type(record).type == signed.SIGNATURE:
            signed.take(position, stream, self.codec.decode(state).record)
        else:
            signed.event(stream, event_id, leaf)

    def _watch(self, position: int, stream: str, event_id: str, record: bytes) -> None:
        """Note the first event of a half that is not a refused attempt's record (see :meth:`join`)."""
        change = lock_change(record)
        if change is None and lock_exempt(stream, record_head(record).type):
            return
        self.opening = (position, event_id, change is False)
        self.watching = False

    def _follow_lock(self, position: int, stream: str, event_id: str | None, record: bytes) -> None:
        """Follow the lock through one sealed event; raises :class:`_Found` for one sealed while locked."""
        change = lock_change(record)
        if self.locked_at is None:
            if change is True:
                self.locked_at = position
            return
        if change is None and lock_exempt(stream, record_head(record).type):  # issue 12, item 7
            return
        if change is not False:
            raise _Found(_locked(position, event_id, self.locked_at))
        self.locked_at = None

    def _extend(self, leaves: list[bytes], rows: list[SealedRow]) -> None:
        """Grow the tree; note the tree at the published size and where the head ends."""
        before = self.size
        after = self.size = before + len(leaves)
        if self.published is not None and before < self.published.size <= after:
            self.tree.extend(leaves[: self.published.size - before])
            self.published_at = self.tree.copy()
            self.tree.extend(leaves[self.published.size - before :])
        else:
            self.tree.extend(leaves)
        if self.head is not None and self.beyond_head is None and before <= self.head.size < after:
            row = rows[self.head.size - before]
            self.beyond_head = (row[0], row[5])

    def _diagnose(self, row: SealedRow, leaf: bytes, previous: bytes) -> Mismatch:
        """Name what went wrong at this row, given its recomputed leaf and the chain before it.

        Runs once, on the failure path, after the scan stopped, so it may query.
        """
        position, originator, _version, _topic, state, event_id, participant, _content, leaf_, chain_ = row
        before = self.snap.previous_position(position)
        orphans = self.snap.entries_between(before, position)
        if orphans:
            missing, missing_id = orphans[0]
            return Mismatch(missing, missing_id, _DELETED)
        if leaf_ is None:
            return Mismatch(
                position,
                _stored_id(state, self.codec),
                "this stored event has no ledger entry: it was inserted directly in the database",
            )
        stored_id = _stored_id(state, self.codec)
        chain = hashlib.sha256(previous + leaf).digest()
        if leaf != leaf_:
            if chain == chain_:
                problem = "the ledger entry's leaf hash was edited (the stored event still matches the chain)"
            elif stored_id != event_id:
                problem = (
                    f"the stored event here is {stored_id}, not the event sealed at this position: "
                    "events were reordered, moved or replaced"
                )
            else:
                problem = "the stored event does not match its seal: modified, or moved from another position"
            return Mismatch(position, event_id, problem)
        if chain != chain_:
            if position > before + 1:
                return Mismatch(
                    before + 1,
                    None,
                    f"the event(s) sealed between positions {before} and {position} were deleted "
                    f"from both tables: the hash chain breaks at position {position}",
                )
            return Mismatch(
                position,
                event_id,
                "the hash chain breaks here: this entry's chain hash was edited, "
                "or the entries before it were rewritten",
            )
        if stored_id is None:
            problem = "the stored event is not a readable ledger event (and its seal was rewritten to match)"
            return Mismatch(position, event_id, problem)
        if originator != participant:
            return Mismatch(position, event_id, "the ledger entry's participant was edited")
        if stored_id != event_id:
            problem = f"the ledger entry's event id was edited (the event is {stored_id})"
            return Mismatch(position, event_id, problem)
        return Mismatch(position, event_id, "the ledger entry's content hash was edited")

    def _tail(self) -> None:
        """After the last event: entries without events, and the head in ``ledger_meta``."""
        if self.snap.entry_count() != self.size:
            orphan = self.snap.first_orphan_entry()
            if orphan is not None:
                raise _Found(Mismatch(*orphan, _DELETED))
        size = self.size
        if self.head is None:
            if size or self.head_chain is not None:
                raise _Found(Mismatch(None, None, "ledger_meta has no readable tree head (frontier)"))
            return
        if self.head.size > size:
            raise _Found(
                Mismatch(
                    self.last + 1,
                    None,
                    f"the ledger's head seals {self.head.size} events but only {size} are stored: "
                    f"the last {self.head.size - size} were removed (truncated)",
                )
            )
        if self.head.size < size:
            position, event_id = self.beyond_head or (None, None)
            raise _Found(
                Mismatch(
                    position,
                    event_id,
                    f"{size - self.head.size} stored events after the ledger's head of {self.head.size} "
                    "were appended outside the ledger",
                )
            )
        if self.head != self.tree:
            raise _Found(Mismatch(None, None, "ledger_meta's frontier does not match the recomputed tree"))
        if size and self.head_chain != self.chain:
            raise _Found(Mismatch(None, None, "ledger_meta's chain hash does not match the recomputed chain"))

    def _published_problem(self) -> Mismatch | None:
        published = self.published
        if published is None:
            return None
        size = self.size
        if published.size > size:
            return Mismatch(
                self.last + 1,
                None,
                f"the published digest covers {published.size} events but only {size} are stored: "
                "events were removed since it was published",
            )
        if not isinstance(self.published_at, Frontier) or self.published_at.root() != published.root:
            return Mismatch(
                None,
                None,
                f"the first {published.size} stored events do not give the published root: "
                "history was rewritten since the digest was published",
            )
        return None
