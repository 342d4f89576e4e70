"""Every answer of the Merkle module compared whole: errors, proof verdicts and the frontier's bytes.

SPEC section 5 (``verify-proof`` explains its verdict); issue 16: a message naming
the wrong size, index or hash, or a verdict with the wrong reason, must fail a test.
Expected texts are built from the hashes the module computes (the hashing itself
is checked against RFC 6962's vectors in ``tests/test_merkle.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from ledger.evidence.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    consistency_proof_document,
    inclusion_proof,
    inclusion_proof_document,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
    verify_proof_document,
)

LEAVES = [leaf_hash(bytes([i])) for i in range(8)]
R3, R2, R5, R8 = root(LEAVES[:3]), root(LEAVES[:2]), root(LEAVES[:5]), root(LEAVES)
OTHER = "ab" * 32


def _raised(call: Callable[[], object], kind: type[Exception] = ValueError) -> str:
    with pytest.raises(kind) as raised:
        call()
    return str(raised.value)


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda: root([LEAVES[0], "x"]), TypeError, "leaf hash #1 is str, not bytes"),
        (lambda: root([LEAVES[0], 7]), TypeError, "leaf hash #1 is int, not bytes"),
        (lambda: root([LEAVES[0][:31]]), ValueError, "leaf hash #0 has 31 bytes, not 32"),
        (lambda: inclusion_proof(LEAVES, 0, -1), ValueError, "size must be a non-negative int, got -1"),
        (lambda: inclusion_proof(LEAVES, 0, True), ValueError, "size must be a non-negative int, got True"),
        (lambda: inclusion_proof(LEAVES[:3], 0, 5), ValueError, "size 5 exceeds the 3 leaf hashes given"),
        (lambda: inclusion_proof(LEAVES[:3], 3), ValueError, "index 3 is outside a tree of size 3"),
        (lambda: inclusion_proof(LEAVES[:3], -1), ValueError, "index -1 is outside a tree of size 3"),
        (lambda: inclusion_proof(LEAVES[:3], True), ValueError, "index True is outside a tree of size 3"),
        (lambda: consistency_proof(LEAVES[:3], 4), ValueError, "old size 4 is outside 0..3"),
        (lambda: consistency_proof(LEAVES[:3], -1), ValueError, "old size -1 is outside 0..3"),
        (lambda: Frontier([LEAVES[0], LEAVES[1], 7]), TypeError, "leaf hash #2 is int, not bytes"),
        (lambda: Frontier([LEAVES[0], b"short"]), ValueError, "leaf hash #1 has 5 bytes, not 32"),
        (
            lambda: Frontier.from_bytes(b"\x00" * 7),
            ValueError,
            "frontier data shorter than its 8-byte size header",
        ),
        (
            lambda: Frontier.from_bytes((3).to_bytes(8, "big") + LEAVES[0]),
            ValueError,
            "frontier of size 3 needs 72 bytes, got 40",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bad_arguments_are_named(call: Callable[[], object], kind: type[Exception], message: str) -> None:
    assert _raised(call, kind) == message


def test_bytes_like_leaf_hashes_count_as_bytes() -> None:
    as_bytearrays = [bytearray(h) for h in LEAVES[:3]]
    assert root(as_bytearrays) == R3  # type: ignore[arg-type]
    assert root([memoryview(h) for h in LEAVES[:3]]) == R3  # type: ignore[misc]
    assert Frontier(as_bytearrays).root() == R3  # type: ignore[arg-type]
    assert Frontier([memoryview(LEAVES[0])]).hashes == (LEAVES[0],)  # type: ignore[list-item]


def test_the_frontier_in_bytes_and_as_text() -> None:
    frontier = Frontier(LEAVES[:3])
    assert frontier.to_bytes() == (3).to_bytes(8, "big") + frontier.hashes[0] + LEAVES[2]
    assert frontier.hashes == (root(LEAVES[:2]), LEAVES[2])
    assert Frontier.from_bytes(frontier.to_bytes()) == frontier
    assert Frontier.from_bytes(Frontier().to_bytes()) == Frontier()
    assert repr(frontier) == f"Frontier(size=3, root={R3.hex()})"
    assert frontier != Frontier(LEAVES[:2])
    assert frontier != Frontier([LEAVES[0], LEAVES[2], LEAVES[1]])
    assert (frontier == "Frontier") is False
    copy = frontier.copy()
    copy.append(LEAVES[3])
    assert (frontier.size, copy.size, copy.root()) == (3, 4, root(LEAVES[:4]))
    with pytest.raises(TypeError):
        hash(frontier)


def test_an_empty_frontier_and_an_empty_tree() -> None:
    assert (Frontier().size, Frontier().hashes, Frontier().root()) == (0, (), EMPTY_ROOT)
    assert root([]) == EMPTY_ROOT


def test_verification_is_false_not_merely_falsy() -> None:
    proof = inclusion_proof(LEAVES[:5], 4)
    assert verify_inclusion(LEAVES[4], 4, 5, proof, R5) is True
    assert verify_inclusion(LEAVES[4], 4, 5, [*proof, LEAVES[0]], R5) is False  # too long
    assert verify_inclusion(LEAVES[4], 4, 5, proof[:-1], R5) is False  # too short
    assert verify_inclusion(LEAVES[4], 4, 5, [LEAVES[0][:31]], R5) is False
    assert verify_inclusion(LEAVES[4][:31], 4, 5, proof, R5) is False
    assert verify_inclusion(LEAVES[4], 5, 5, proof, R5) is False
    assert verify_inclusion(LEAVES[4], 4, 5, [None], R5) is False  # type: ignore[list-item]
    consistency = consistency_proof(LEAVES, 5)
    assert verify_consistency(5, 8, R5, R8, consistency) is True
    assert verify_consistency(5, 8, R5, R8, [*consistency, LEAVES[0]]) is False
    assert verify_consistency(5, 8, R5, R8, consistency[:-1]) is False
    assert verify_consistency(5, 8, R5, R8, [LEAVES[0][:31], *consistency[1:]]) is False
    assert verify_consistency(5, 8, R5, R8[:31], consistency) is False
    assert verify_consistency(0, 8, EMPTY_ROOT, R8, []) is True
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, []) is True
    assert verify_consistency(8, 8, R8, R8, []) is True
    assert verify_consistency(4, 8, root(LEAVES[:4]), R8, consistency_proof(LEAVES, 4)) is True


# -- proof documents -----------------------------------------------------------------------


def _inclusion(**changes: Any) -> dict[str, Any]:
    """The inclusion proof of leaf 0 in the tree of 3, with ``changes``."""
    return {**inclusion_proof_document(LEAVES, 0, 3), **changes}


def _consistency(old: int = 2, size: int = 3, **changes: Any) -> dict[str, Any]:
    return {**consistency_proof_document(LEAVES, old, size), **changes}


def _short(h: bytes | str) -> str:
    return (h.hex() if isinstance(h, bytes) else h)[:16] + "..."


class _Exploding(Mapping[str, Any]):
    """A document whose every lookup raises: the verdict names the error, it never escapes."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _NoRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


LEAF0 = LEAVES[0].hex()

DOCUMENTS: list[tuple[str, object, object, tuple[bool, str]]] = [
    (
        "not an object",
        [1],
        None,
        (False, "malformed input: a proof document must be an object, got [1]"),
    ),
    (
        "unknown kind",
        {"kind": "x"},
        None,
        (False, "malformed input: proof document 'kind' must be 'inclusion' or 'consistency', got 'x'"),
    ),
    (
        "no index",
        {"kind": "inclusion"},
        None,
        (False, "malformed input: inclusion proof has no 'index'"),
    ),
    (
        "negative size",
        _inclusion(**{"size": -1}),
        None,
        (False, "malformed input: inclusion proof 'size' must be an integer in 0..2**64-1, got -1"),
    ),
    (
        "size of 2**64",
        _inclusion(**{"size": 1 << 64}),
        None,
        (
            False,
            "malformed input: inclusion proof 'size' must be an integer in 0..2**64-1,"
            " got 18446744073709551616",
        ),
    ),
    (
        "a long value is cut",
        _inclusion(**{"index": "x" * 100}),
        None,
        (
            False,
            f"malformed input: inclusion proof 'index' must be an integer in 0..2**64-1, got '{'x' * 56}...",
        ),
    ),
    (
        "a value without a representation",
        _inclusion(**{"index": _NoRepr()}),
        None,
        (False, "malformed input: inclusion proof 'index' must be an integer in 0..2**64-1, got <_NoRepr>"),
    ),
    (
        "no root",
        {key: value for key, value in _inclusion().items() if key != "root"},
        None,
        (False, "malformed input: inclusion proof has no 'root'"),
    ),
    (
        "bad hex",
        _inclusion(root="zz"),
        None,
        (False, "malformed input: inclusion proof 'root' must be 64 hex digits, got 'zz'"),
    ),
    (
        "no path",
        {key: value for key, value in _inclusion().items() if key != "path"},
        None,
        (False, "malformed input: inclusion proof has no 'path'"),
    ),
    (
        "path not a list",
        _inclusion(path="x"),
        None,
        (False, "malformed input: inclusion proof 'path' must be a list of hex hashes, got 'x'"),
    ),
    (
        "bad path entry",
        _inclusion(path=[OTHER, 1]),
        None,
        (False, "malformed input: inclusion proof path[1] must be 64 hex digits, got 1"),
    ),
    (
        "index outside the tree",
        _inclusion(**{"index": 3}),
        None,
        (False, "inclusion proof invalid: index 3 is outside a tree of size 3"),
    ),
    (
        "path too short",
        _inclusion(path=[OTHER]),
        None,
        (
            False,
            "inclusion proof invalid: leaf 0 of a tree of size 3 needs a path of 2 hashes,"
            " the document has 1",
        ),
    ),
    (
        "wrong root",
        _inclusion(root=OTHER),
        None,
        (
            False,
            f"inclusion proof invalid: leaf hash {_short(LEAF0)} at index 0 with this path gives root"
            f" {R3.hex()}, not the claimed {OTHER}",
        ),
    ),
    (
        "valid inclusion",
        _inclusion(),
        None,
        (
            True,
            f"inclusion proof valid: leaf hash {LEAF0} is leaf 0 (0-based) of the tree of size 3"
            f" with root {R3.hex()}",
        ),
    ),
    (
        "valid inclusion, the published digest",
        _inclusion(),
        {"size": 3, "root": R3.hex()},
        (
            True,
            f"inclusion proof valid: leaf hash {LEAF0} is leaf 0 (0-based) of the tree of size 3"
            f" with root {R3.hex()}; its size and root match the published digest",
        ),
    ),
    (
        "valid inclusion, another digest",
        _inclusion(),
        {"size": 2, "root": R2.hex()},
        (
            False,
            f"inclusion proof valid: leaf hash {LEAF0} is leaf 0 (0-based) of the tree of size 3"
            f" with root {R3.hex()}; but it does not match the published digest: the digest has size 2"
            f" with root {R2.hex()}, the proof size 3 with root {R3.hex()}",
        ),
    ),
    (
        "digest not an object",
        _inclusion(),
        5,
        (False, "malformed input: the digest must be an object, got 5"),
    ),
    (
        "digest without a size",
        _inclusion(),
        {"root": R3.hex()},
        (False, "malformed input: digest has no 'size'"),
    ),
    (
        "an invalid proof is not compared with the digest",
        _inclusion(**{"index": 3}),
        5,
        (False, "inclusion proof invalid: index 3 is outside a tree of size 3"),
    ),
    (
        "a lookup that raises",
        _Exploding(),
        None,
        (False, "malformed input: RuntimeError: 'boom'"),
    ),
    (
        "old size above size",
        _consistency(**{"old_size": 4}),
        None,
        (False, "consistency proof invalid: old size 4 exceeds size 3"),
    ),
    (
        "no old root",
        {key: value for key, value in _consistency().items() if key != "old_root"},
        None,
        (False, "malformed input: consistency proof has no 'old_root'"),
    ),
    (
        "consistent with the empty tree",
        _consistency(0),
        None,
        (
            True,
            f"consistency proof valid: the tree of size 0 with root {EMPTY_ROOT.hex()} is consistent with"
            f" the tree of size 3 with root {R3.hex()}: every tree extends the empty tree",
        ),
    ),
    (
        "identical heads",
        _consistency(3),
        None,
        (
            True,
            f"consistency proof valid: the tree of size 3 with root {R3.hex()} is consistent with"
            f" the tree of size 3 with root {R3.hex()}: the two tree heads are identical",
        ),
    ),
    (
        "a prefix, the older digest",
        _consistency(),
        {"size": 2, "root": R2.hex()},
        (
            True,
            f"consistency proof valid: the tree of size 2 with root {R2.hex()} is consistent with"
            f" the tree of size 3 with root {R3.hex()}: the older tree is a prefix of the newer one;"
            " its old size and root match the published digest",
        ),
    ),
    (
        "a prefix, another digest",
        _consistency(),
        {"size": 8, "root": R8.hex()},
        (
            False,
            f"consistency proof valid: the tree of size 2 with root {R2.hex()} is consistent with"
            f" the tree of size 3 with root {R3.hex()}: the older tree is a prefix of the newer one;"
            f" but it does not match the published digest: the digest has size 8 with root {R8.hex()},"
            f" the proof size 3 with root {R3.hex()} or size 2 with root {R2.hex()}",
        ),
    ),
    (
        "equal sizes with a path",
        _consistency(3, path=[OTHER]),
        None,
        (False, "consistency proof invalid: equal sizes need an empty path"),
    ),
    (
        "equal sizes, other roots",
        _consistency(3, old_root=OTHER),
        None,
        (False, "consistency proof invalid: equal sizes but different roots"),
    ),
    (
        "empty old tree with a path",
        _consistency(0, path=[OTHER]),
        None,
        (False, "consistency proof invalid: an empty old tree needs an empty path"),
    ),
    (
        "empty old tree, another root",
        _consistency(0, old_root=OTHER),
        None,
        (False, f"consistency proof invalid: the empty tree's root is {EMPTY_ROOT.hex()}, not {OTHER}"),
    ),
    (
        "path of the wrong length",
        _consistency(path=[OTHER, OTHER, OTHER]),
        None,
        (False, "consistency proof invalid: sizes 2 -> 3 need a path of 1 hashes, the document has 3"),
    ),
    (
        "empty path between two sizes",
        _consistency(path=[]),
        None,
        (False, "consistency proof invalid: sizes 2 -> 3 need a path of 1 hashes, the document has 0"),
    ),
    (
        "wrong old root",
        _consistency(5, 8, old_root=OTHER),
        None,
        (
            False,
            f"consistency proof invalid: the path gives old root {R5.hex()}, not the claimed {OTHER}",
        ),
    ),
    (
        "wrong new root",
        _consistency(5, 8, root=OTHER),
        None,
        (False, f"consistency proof invalid: the path gives root {R8.hex()}, not the claimed {OTHER}"),
    ),
]


@pytest.mark.parametrize(("name", "doc", "digest", "verdict"), DOCUMENTS, ids=[row[0] for row in DOCUMENTS])
def test_proof_document_verdicts(name: str, doc: Any, digest: Any, verdict: tuple[bool, str]) -> None:
    assert verify_proof_document(doc, digest) == verdict
