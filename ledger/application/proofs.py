"""``prove``: inclusion and consistency proofs from the store (SPEC section 5).

A proof is built from the leaf hashes sealed in ``ledger_entries`` (read in
ledger order, in one snapshot) with :mod:`ledger.evidence.merkle`; the auditor checks
it against a digest published earlier (:mod:`ledger.evidence.proofcheck`), so nothing
here has to be trusted: a proof built from tampered rows simply fails there.
Still, ``prove`` refuses (exit 1) to print a proof it can see is wrong - a
tree that does not give the sealed head, or an event whose stored bytes no
longer hash to its leaf - and says to run ``verify``.

Leaf indexes are 0-based ranks in ledger order; ``event.position`` is the
ledger position (the store's notification id).

``verify-proof`` (:func:`check`) needs no store: it checks a proof against the
digests given and returns a :class:`ProofCheck`; a document that is not a proof
at all is :class:`InvalidInput` (exit 2), a proof that does not hold is
``ok`` false (exit 1).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.application.verification import Digest, TamperDetected, read_head
from ledger.domain.errors import InvalidInput
from ledger.evidence.merkle import consistency_proof_document, inclusion_proof_document, leaf_hash
from ledger.evidence.proofcheck import check_proof, read_entry
from ledger.storage.scan import Snapshot, snapshot
from ledger.storage.seal import canonical_entry

if TYPE_CHECKING:
    from ledger.application.trial_ledger import TrialLedger

# How the proof checker begins the explanation of a document it cannot read as a proof.
MALFORMED = "malformed input"


@dataclass(frozen=True)
class ProofCheck:
    """The outcome of ``verify-proof`` (SPEC section 5): valid or not, and why, per digest."""

    ok: bool
    kind: str | None
    messages: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "kind": self.kind, "messages": self.messages}


def check(proof: Any, digests: Sequence[Any] = ()) -> ProofCheck:
    """Check a parsed proof document against each published digest (or alone, without one).

    Raises :class:`InvalidInput` when the proof or a digest is not a document
    of its kind at all: bad input, not a failed proof.
    """
    results = [check_proof(proof, digest) for digest in digests] or [check_proof(proof)]
    messages = [message for _, message in results]
    ok = all(result for result, _ in results)
    malformed = [message for message in messages if message.startswith(MALFORMED)]
    if not ok and malformed:
        raise InvalidInput(malformed[0])
    kind = proof.get("kind") if isinstance(proof, dict) else None
    return ProofCheck(ok, kind if isinstance(kind, str) else None, messages)


def _leaves(snap: Snapshot, size: int | None) -> tuple[Digest, int, list[int], list[bytes]]:
    """The sealed head, the tree size asked for, and the positions and leaf hashes up to it."""
    frontier, _ = read_head(snap)
    head = Digest(0, b"") if frontier is None else Digest(frontier.size, frontier.root())
    if size is None:
        size = head.size
    if size < 0 or size > head.size:
        raise InvalidInput(f"size: must be between 0 and the ledger's size {head.size}, got {size}")
    positions, leaves = snap.leaf_hashes(size)
    if len(leaves) < size:
        raise TamperDetected(
            f"the ledger's head seals {head.size} events but ledger_entries holds {len(leaves)}; run verify"
        )
    return head, size, positions, leaves


def _check_root(doc: dict[str, Any], head: Digest) -> None:
    if doc["size"] == head.size and doc["root"] != head.root.hex():
        raise TamperDetected("the sealed leaf hashes do not give the ledger's root; run verify")


def inclusion(ledger: TrialLedger, event_id: str, size: int | None = None) -> dict[str, Any]:
    """The inclusion proof of one event in the tree of ``size`` events (default: all).

    :func:`ledger.evidence.merkle.inclusion_proof_document` plus ``event``: the event's
    canonical bytes and what they say (:class:`ledger.evidence.proofcheck.EventView`).
    """
    with snapshot(ledger) as snap:
        position = snap.entry_of(event_id)
        if position is None:
            raise InvalidInput(f"event_id: no event {event_id} in the ledger")
        head, size, positions, leaves = _leaves(snap, size)
        index = bisect_left(positions, position)
        if index >= size or positions[index] != position:
            raise InvalidInput(
                f"event_id: {event_id} (position {position}) is not among the first {size} events"
            )
        stored = snap.event_at(position)
        if stored is None:
            raise TamperDetected(f"the stored event {event_id} at position {position} is missing; run verify")
        entry = canonical_entry(position, *stored)
        if leaf_hash(entry) != leaves[index]:
            raise TamperDetected(
                f"the stored event {event_id} at position {position} does not match its seal; run verify"
            )
        doc = inclusion_proof_document(leaves, index, size)
        _check_root(doc, head)
        doc["event"] = {**read_entry(entry, ledger.codec.plain).to_json(), "entry": entry.hex()}
        return doc


def consistency(ledger: TrialLedger, old_size: int, size: int | None = None) -> dict[str, Any]:
    """The consistency proof from the tree of ``old_size`` events to that of ``size`` (default: all)."""
    with snapshot(ledger) as snap:
        head, size, _, leaves = _leaves(snap, size)
        if not 0 <= old_size <= size:
            raise InvalidInput(f"from_size: must be between 0 and {size}, got {old_size}")
        doc = consistency_proof_document(leaves, old_size, size)
        _check_root(doc, head)
        return doc
