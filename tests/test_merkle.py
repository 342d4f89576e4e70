"""Tests of ledger.evidence.merkle, the RFC 6962 / RFC 9162 Merkle tree (SPEC section 5).

The reference below is a deliberately naive transcription of RFC 6962 section 2.1:
recursive over list slices, splitting at k = the largest power of two smaller
than n, working on the raw entries. It shares no code with the module.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.evidence.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    Frontier,
    consistency_proof,
    consistency_proof_document,
    inclusion_proof,
    inclusion_proof_document,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
    verify_proof_document,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- naive reference


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1, over raw entries."""
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _k(n)
    return _sha(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:]))


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 section 2.1.1."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 section 2.1.2."""
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 section 2.1.2 (defined for 0 < m < n; {} for m == n)."""
    return naive_subproof(m, d, True)


def naive_shape(m: int, n: int) -> tuple[str, ...]:
    """Which side each sibling of PATH(m, D[n]) is on, leaf upwards."""
    if n == 1:
        return ()
    k = _k(n)
    if m < k:
        return (*naive_shape(m, k), "R")
    return (*naive_shape(m - k, n - k), "L")


def naive_consistency_shape(m: int, n: int, b: bool = True) -> tuple[str, ...]:
    """What each element of SUBPROOF(m, D[n], b) is: the old subtree itself, or a sibling."""
    if m == n:
        return () if b else ("self",)
    k = _k(n)
    if m <= k:
        return (*naive_consistency_shape(m, k, b), "R")
    return (*naive_consistency_shape(m - k, n - k, False), "L")


# --------------------------------------------------------------------------- helpers


def entries(n: int, seed: bytes = b"") -> list[bytes]:
    """n distinct entries."""
    return [seed + i.to_bytes(4, "big") for i in range(n)]


def hashed(d: list[bytes]) -> list[bytes]:
    return [leaf_hash(e) for e in d]


def flip(h: bytes, pos: int = 0, bit: int = 1) -> bytes:
    pos %= len(h)
    return h[:pos] + bytes([h[pos] ^ bit]) + h[pos + 1 :]


# --------------------------------------------------------------------------- RFC 6962 vectors

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
CT_ROOTS = [  # indexed by tree size
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (index, size, path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
CT_CONSISTENCY = [  # (old_size, new_size, path)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_hash_primitives() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    assert HASH_SIZE == len(EMPTY_ROOT) == len(a) == 32


def test_rfc6962_vectors_roots() -> None:
    hashes = hashed(CT_LEAVES)
    assert [h.hex() for h in hashes] == CT_LEAF_HASHES
    assert root([]).hex() == CT_ROOTS[0]
    assert root(hashes).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    frontier = Frontier()
    assert frontier.root().hex() == CT_ROOTS[0]
    for size in range(1, 9):
        assert root(hashes[:size]).hex() == CT_ROOTS[size]
        assert naive_mth(CT_LEAVES[:size]).hex() == CT_ROOTS[size]
        frontier.append(hashes[size - 1])
        assert frontier.root().hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_rfc6962_vectors_inclusion(index: int, size: int, path: list[str]) -> None:
    hashes = hashed(CT_LEAVES)
    proof = inclusion_proof(hashes, index, size)
    assert [p.hex() for p in proof] == path
    assert verify_inclusion(hashes[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_rfc6962_vectors_consistency(old: int, new: int, path: list[str]) -> None:
    hashes = hashed(CT_LEAVES)
    proof = consistency_proof(hashes, old, new)
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)


# --------------------------------------------------------------------------- against the naive MTH


def test_root_and_proofs_match_naive_for_sizes_0_to_70() -> None:
    d = entries(70, b"naive")
    hashes = hashed(d)
    for n in range(71):
        assert root(hashes[:n]) == naive_mth(d[:n])
        for m in range(n):
            assert inclusion_proof(hashes, m, n) == naive_path(m, d[:n]), (m, n)
        # PROOF is defined for 0 < m < n; equal sizes give the empty proof.
        for m in range(1, n + 1):
            assert consistency_proof(hashes, m, n) == naive_proof(m, d[:n]), (m, n)
        assert consistency_proof(hashes, 0, n) == []


@FAST
@given(st.lists(st.binary(max_size=6), min_size=1, max_size=400), st.data())
def test_root_and_proofs_match_naive_random(d: list[bytes], data: st.DataObject) -> None:
    """Random entries (duplicates allowed) and sizes, compared with RFC 6962's recursion."""
    n = len(d)
    hashes = hashed(d)
    assert root(hashes) == naive_mth(d)
    m = data.draw(st.integers(0, n - 1), label="index")
    assert inclusion_proof(hashes, m) == naive_path(m, d)
    old = data.draw(st.integers(1, n), label="old_size")
    assert consistency_proof(hashes, old) == naive_proof(old, d)
    size = data.draw(st.integers(0, n), label="prefix")
    assert root(hashes[:size]) == naive_mth(d[:size])


def test_proofs_use_the_requested_prefix_only() -> None:
    d = entries(50, b"prefix")
    hashes = hashed(d)
    assert inclusion_proof(hashes, 3, 20) == naive_path(3, d[:20])
    assert consistency_proof(hashes, 7, 20) == naive_proof(7, d[:20])
    # Any iterable of leaves works, a generator included.
    assert inclusion_proof((h for h in hashes), 3, 20) == naive_path(3, d[:20])


def test_argument_errors() -> None:
    hashes = hashed(entries(5))
    with pytest.raises(ValueError):
        inclusion_proof(hashes, 5)
    with pytest.raises(ValueError):
        inclusion_proof(hashes, -1)
    with pytest.raises(ValueError):
        inclusion_proof(hashes, 0, 6)  # more leaves asked for than given
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        consistency_proof(hashes, 4, 3)
    with pytest.raises(ValueError):
        consistency_proof(hashes, -1, 3)
    with pytest.raises(ValueError):
        root([*hashes, b"short"])
    with pytest.raises(TypeError):
        root([*hashes, "a" * 32])  # type: ignore[list-item]
    # bytes-like leaves are accepted and give the same root
    assert root([bytearray(h) for h in hashes]) == root(hashes)
    assert root([memoryview(h) for h in hashes]) == root(hashes)


# --------------------------------------------------------------------------- frontier


def test_frontier_matches_root_for_every_prefix_and_round_trips() -> None:
    hashes = hashed(entries(300, b"frontier"))
    frontier = Frontier()
    assert frontier.size == 0
    assert frontier.to_bytes() == bytes(8)
    assert Frontier.from_bytes(frontier.to_bytes()) == frontier
    for n, h in enumerate(hashes, start=1):
        frontier.append(h)
        assert frontier.size == n
        assert frontier.root() == root(hashes[:n])
        assert len(frontier.hashes) == n.bit_count()
        data = frontier.to_bytes()
        assert len(data) == 8 + 32 * n.bit_count()
        restored = Frontier.from_bytes(data)
        assert restored == frontier
        assert restored.size == n
        assert restored.root() == frontier.root()
        assert restored.to_bytes() == data
    # A restored frontier keeps growing the same tree.
    half = Frontier.from_bytes(Frontier(hashes[:123]).to_bytes())
    half.extend(hashes[123:])
    assert half == frontier
    assert half.root() == root(hashes)


def test_frontier_hashes_are_the_perfect_subtree_roots() -> None:
    hashes = hashed(entries(13))  # 13 = 8 + 4 + 1
    frontier = Frontier(hashes)
    assert frontier.hashes == (root(hashes[:8]), root(hashes[8:12]), hashes[12])


@FAST
@given(st.integers(0, 3000), st.lists(st.integers(0, 600), max_size=6))
def test_frontier_extend_in_chunks(n: int, cuts: list[int]) -> None:
    hashes = hashed(entries(n, b"chunks"))
    frontier = Frontier()
    start = 0
    for cut in sorted(min(c, n) for c in cuts):
        frontier.extend(hashes[start:cut] if cut > start else [])
        start = max(start, cut)
        assert frontier.root() == root(hashes[:start])
    frontier.extend(iter(hashes[start:]))
    assert frontier.size == n
    assert frontier.root() == root(hashes)
    assert Frontier.from_bytes(frontier.to_bytes()) == frontier
    copy = frontier.copy()
    copy.append(leaf_hash(b"more"))
    assert copy != frontier
    assert frontier.size == n


@FAST
@given(st.integers(0, 2000), st.data())
def test_a_range_hashed_apart_joins_the_frontier_of_the_leaves_before_it(n: int, data: st.DataObject) -> None:
    """Two parts of the leaves hashed apart (verify's two halves, issue 14) give the tree of them all."""
    hashes = hashed(entries(n, b"range"))
    start = data.draw(st.integers(0, n), label="start")
    cuts = sorted(data.draw(st.lists(st.integers(start, n), max_size=5), label="cuts"))
    part = CompactRange(start)
    done = start
    for cut in [*cuts, n]:
        part.extend(hashes[done:cut] if cut > done else [])
        done = max(done, cut)
        # Joined at any point, the range gives the root of every leaf so far.
        joined = Frontier(hashes[:start])
        joined.extend_range(part.copy())
        assert joined.size == done == part.end
        assert joined.root() == root(hashes[:done])
    heights = [height for height, _ in part.nodes]
    assert all(first % (1 << height) == 0 for first, height in zip(_firsts(part), heights, strict=True))
    whole = Frontier(hashes[:start])
    whole.extend_range(part)
    assert whole == Frontier(hashes)


def _firsts(part: CompactRange) -> list[int]:
    """The first leaf of each subtree of ``part``."""
    firsts, first = [], part.start
    for height, _ in part.nodes:
        firsts.append(first)
        first += 1 << height
    return firsts


def test_a_range_joins_only_where_the_tree_ends() -> None:
    hashes = hashed(entries(10))
    part = CompactRange(4)
    part.extend(hashes[4:])
    frontier = Frontier(hashes[:3])
    with pytest.raises(ValueError, match="a range starting at leaf 4 cannot follow 3 leaves"):
        frontier.extend_range(part)
    assert frontier == Frontier(hashes[:3])
    with pytest.raises(ValueError, match="start must be a non-negative int"):
        CompactRange(-1)
    with pytest.raises(ValueError, match="leaf hash #1 has 5 bytes"):
        part.extend([hashes[0], b"short"])
    assert part.end == 10  # nothing of a bad batch was taken


def test_frontier_rejects_bad_input_atomically() -> None:
    hashes = hashed(entries(10))
    frontier = Frontier(hashes[:5])
    before = frontier.to_bytes()
    with pytest.raises(ValueError):
        frontier.extend([hashes[5], hashes[6], b"\x00" * 31])
    assert frontier.to_bytes() == before
    with pytest.raises(TypeError):
        frontier.append("0" * 32)  # type: ignore[arg-type]
    assert frontier.to_bytes() == before
    frontier.append(bytearray(hashes[5]))  # bytes-like is fine
    assert frontier.root() == root(hashes[:6])
    for bad in (b"", b"\x00" * 7, bytes(8) + b"\x00", (1).to_bytes(8, "big"), before + b"x"):
        with pytest.raises(ValueError):
            Frontier.from_bytes(bad)


# --------------------------------------------------------------------------- inclusion


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 130),
    seed=st.binary(max_size=4),
    data=st.data(),
)
def test_inclusion_proofs_verify_and_detect_tampering(
    n: int,
    seed: bytes,
    data: st.DataObject,
) -> None:
    hashes = hashed(entries(n, seed))
    tree_root = root(hashes)
    for index in range(n):
        proof = inclusion_proof(hashes, index)
        assert verify_inclusion(hashes[index], index, n, proof, tree_root)

    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(hashes, index)
    leaf = hashes[index]
    pos = data.draw(st.integers(0, 31), label="byte")
    bit = 1 << data.draw(st.integers(0, 7), label="bit")

    # any byte of the leaf
    assert not verify_inclusion(flip(leaf, pos, bit), index, n, proof, tree_root)
    # any proof element
    for i in range(len(proof)):
        bad = [*proof]
        bad[i] = flip(bad[i], pos, bit)
        assert not verify_inclusion(leaf, index, n, bad, tree_root)
    # the root
    assert not verify_inclusion(leaf, index, n, proof, flip(tree_root, pos, bit))
    # a missing, extra or reordered element
    if proof:
        assert not verify_inclusion(leaf, index, n, proof[:-1], tree_root)
        assert not verify_inclusion(leaf, index, n, proof[1:], tree_root)
    assert not verify_inclusion(leaf, index, n, [*proof, tree_root], tree_root)
    if len(proof) > 1 and proof[0] != proof[1]:
        swapped = [proof[1], proof[0], *proof[2:]]
        assert not verify_inclusion(leaf, index, n, swapped, tree_root)
    # the index (leaves are distinct, so no other position holds this leaf)
    other = data.draw(st.integers(-3, n + 3).filter(lambda j: j != index), label="other index")
    assert not verify_inclusion(leaf, other, n, proof, tree_root)
    # the size, or index and size together: the root binds them only through the
    # path's shape, so the proof verifies elsewhere exactly when RFC 6962's PATH has
    # the same shape there (e.g. leaf 0 of 5 and of 6, leaf 4 of 5 and leaf 2 of 3);
    # a published digest pins the size (SPEC section 5).
    shape = naive_shape(index, n)
    random_pair = (data.draw(st.integers(-1, 300)), data.draw(st.integers(-1, 300)))
    pairs = {
        (index, n - 1),
        (index, n + 1),
        (index, 2 * n),
        (index, n // 2),
        (index // 2, n // 2),
        (index - 1, n - 1),
        (0, 1),
        (index - (n + 1) // 2, n // 2),
        random_pair,
    } - {(index, n)}
    for other_index, other_size in pairs:
        same = 0 <= other_index < other_size and naive_shape(other_index, other_size) == shape
        verified = verify_inclusion(leaf, other_index, other_size, proof, tree_root)
        assert verified == same, (index, n, other_index, other_size)


def test_inclusion_size_shape_example() -> None:
    """Leaf 0 of a 5-leaf tree has PATH [h1, h23, h4]: the same shape as in a 6-leaf tree."""
    hashes = hashed(entries(6))
    proof = inclusion_proof(hashes, 0, 5)
    assert verify_inclusion(hashes[0], 0, 6, proof, root(hashes[:5]))
    assert not verify_inclusion(hashes[0], 0, 6, proof, root(hashes[:6]))
    assert not verify_inclusion(hashes[0], 0, 9, proof, root(hashes[:5]))


def test_inclusion_rejects_a_path_longer_than_the_tree() -> None:
    """RFC 9162 2.1.3.2 step 4a: leaf 1 of a 2-leaf tree is not the only leaf of a 1-leaf one."""
    l0, l1 = hashed(entries(2))
    two = node_hash(l0, l1)
    assert verify_inclusion(l1, 1, 2, [l0], two)
    assert not verify_inclusion(l1, 0, 1, [l0], two)
    assert not verify_inclusion(l1, 0, 1, [], two)


def test_verify_inclusion_never_raises_on_bad_arguments() -> None:
    hashes = hashed(entries(4))
    proof = inclusion_proof(hashes, 1)
    r = root(hashes)
    assert verify_inclusion(hashes[1], 1, 4, proof, r)
    for index, size in [(-1, 4), (4, 4), (0, 0), (1, -4), (True, 4), (1, 4.0), ("1", 4)]:
        assert not verify_inclusion(hashes[1], index, size, proof, r)  # type: ignore[arg-type]
    assert not verify_inclusion(hashes[1][:31], 1, 4, proof, r)
    assert not verify_inclusion(hashes[1], 1, 4, [proof[0][:31], proof[1]], r)
    assert not verify_inclusion(hashes[1], 1, 4, [None, None], r)  # type: ignore[list-item]
    assert verify_inclusion(hashes[0], 0, 1, [], hashes[0])  # a one-leaf tree


# --------------------------------------------------------------------------- consistency


def _check_consistency_pair(hashes: list[bytes], roots: list[bytes], m: int, n: int) -> None:
    proof = consistency_proof(hashes, m, n)
    old_root, new_root = roots[m], roots[n]
    assert verify_consistency(m, n, old_root, new_root, proof), (m, n)
    # either root altered
    assert not verify_consistency(m, n, flip(old_root), new_root, proof), (m, n)
    if m > 0:
        assert not verify_consistency(m, n, old_root, flip(new_root, 31, 0x80), proof), (m, n)
    elif n > 0:  # every tree extends the empty one: nothing about the new root to check
        assert verify_consistency(0, n, EMPTY_ROOT, flip(new_root), [])
    else:
        assert not verify_consistency(0, 0, EMPTY_ROOT, flip(new_root), [])
    # any proof element flipped, dropped or added
    for i in range(len(proof)):
        bad = [*proof]
        bad[i] = flip(bad[i], i)
        assert not verify_consistency(m, n, old_root, new_root, bad), (m, n, i)
    if proof:
        assert not verify_consistency(m, n, old_root, new_root, proof[:-1]), (m, n)
    assert not verify_consistency(m, n, old_root, new_root, [*proof, new_root]), (m, n)
    # a different old tree is not a prefix of this one
    if 0 < m < n:
        assert not verify_consistency(m, n, roots[m - 1], new_root, proof), (m, n)
    # other sizes: as for inclusion, the proof verifies for other sizes exactly when
    # RFC 6962's PROOF has the same shape there; a published digest pins the sizes
    if m > 0:
        shape = naive_consistency_shape(m, n)
        for m2, n2 in {(m - 1, n), (m + 1, n), (2 * m, n), (m // 2, n), (m, n - 1), (m, n + 1)}:
            if (m2, n2) == (m, n):
                continue
            same = 1 <= m2 <= n2 and naive_consistency_shape(m2, n2) == shape
            assert verify_consistency(m2, n2, old_root, new_root, proof) == same, (m, n, m2, n2)


def test_consistency_all_pairs_up_to_40() -> None:
    hashes = hashed(entries(40, b"pairs"))
    roots = [root(hashes[:n]) for n in range(41)]
    for n in range(41):
        for m in range(n + 1):
            _check_consistency_pair(hashes, roots, m, n)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(41, 3000), seed=st.binary(max_size=4), data=st.data())
def test_consistency_random_bigger(n: int, seed: bytes, data: st.DataObject) -> None:
    hashes = hashed(entries(n, seed))
    m = data.draw(st.integers(0, n), label="old_size")
    roots = {m: root(hashes[:m]), n: root(hashes), max(m - 1, 0): root(hashes[: max(m - 1, 0)])}
    frontier = Frontier(hashes[:m])
    assert frontier.root() == roots[m]
    _check_consistency_pair(hashes, roots, m, n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("m", "n"),
    [(1000, 3000), (1024, 2047), (2047, 2048), (1, 4097), (4096, 4097), (3333, 5000), (5000, 5000)],
)
def test_consistency_big_sizes_match_naive(m: int, n: int) -> None:
    d = entries(n, b"big")
    hashes = hashed(d)
    proof = consistency_proof(hashes, m)
    assert proof == naive_proof(m, d)
    roots = {m: naive_mth(d[:m]), n: naive_mth(d), m - 1: root(hashes[: m - 1])}
    _check_consistency_pair(hashes, roots, m, n)  # type: ignore[arg-type]
    for index in (0, m - 1, n // 2, n - 1):
        assert inclusion_proof(hashes, index) == naive_path(index, d)


def test_verify_consistency_edge_cases() -> None:
    hashes = hashed(entries(8))
    r8, r5 = root(hashes), root(hashes[:5])
    assert verify_consistency(8, 8, r8, r8, [])
    assert not verify_consistency(8, 8, r8, r8, [r8])
    assert not verify_consistency(8, 8, r5, r8, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, r8, r8, [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, r8, [r8])
    assert not verify_consistency(5, 8, r5, r8, [])  # step 1: an empty path fails
    proof = consistency_proof(hashes, 5)
    assert verify_consistency(5, 8, r5, r8, proof)
    assert not verify_consistency(8, 5, r8, r5, proof)
    for bad in [(-1, 8), (5, -1), (True, 8), (5, 8.0), ("5", 8), (None, 8)]:
        assert not verify_consistency(*bad, r5, r8, proof)  # type: ignore[arg-type]
    assert not verify_consistency(5, 8, r5[:31], r8, proof)
    assert not verify_consistency(5, 8, r5, r8, [None])  # type: ignore[list-item]


# --------------------------------------------------------------------------- documents


def test_documents_round_trip_through_json() -> None:
    hashes = hashed(entries(37, b"doc"))
    digest = {"size": 37, "root": root(hashes).hex()}
    for index in range(37):
        doc = json.loads(json.dumps(inclusion_proof_document(hashes, index)))
        assert set(doc) == {"kind", "index", "size", "leaf_hash", "root", "path"}
        assert doc["kind"] == "inclusion"
        assert doc["leaf_hash"] == hashes[index].hex()
        assert doc["root"] == digest["root"]
        assert doc["path"] == [p.hex() for p in inclusion_proof(hashes, index)]
        ok, message = verify_proof_document(doc)
        assert ok, message
        assert "valid" in message
        ok, message = verify_proof_document(doc, digest)
        assert ok, message
        assert "digest" in message
    for old in range(38):
        doc = json.loads(json.dumps(consistency_proof_document(hashes, old)))
        assert set(doc) == {"kind", "old_size", "old_root", "size", "root", "path"}
        assert doc["old_root"] == root(hashes[:old]).hex()
        assert doc["path"] == [p.hex() for p in consistency_proof(hashes, old)]
        ok, message = verify_proof_document(doc, digest)
        assert ok, message
        # an auditor holding the older digest may check against that one instead
        old_digest = {"size": old, "root": doc["old_root"]}
        ok, message = verify_proof_document(doc, old_digest)
        assert ok, message


def test_document_prefix_sizes() -> None:
    hashes = hashed(entries(20))
    doc = inclusion_proof_document(hashes, 4, 9)
    assert doc["size"] == 9
    assert doc["root"] == root(hashes[:9]).hex()
    doc = consistency_proof_document(hashes, 4, 9)
    assert (doc["old_size"], doc["size"]) == (4, 9)
    assert doc["root"] == root(hashes[:9]).hex()
    assert verify_proof_document(doc)[0]


def test_documents_detect_tampering_and_digest_mismatch() -> None:
    hashes = hashed(entries(21, b"tamper"))
    digest = {"size": 21, "root": root(hashes).hex()}
    inc = inclusion_proof_document(hashes, 6)
    con = consistency_proof_document(hashes, 11)

    def altered(doc: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
        return {**doc, key: value}

    def flip_hex(h: str) -> str:
        return ("1" if h[0] == "0" else "0") + h[1:]

    cases: list[tuple[dict[str, Any], str]] = [
        (altered(inc, "leaf_hash", flip_hex(inc["leaf_hash"])), "gives root"),
        (altered(inc, "root", flip_hex(inc["root"])), "gives root"),
        (altered(inc, "index", 7), "gives root"),
        (altered(inc, "path", [flip_hex(inc["path"][0]), *inc["path"][1:]]), "gives root"),
        (altered(inc, "path", inc["path"][:-1]), "needs a path of"),
        (altered(inc, "index", 21), "outside"),
        (altered(con, "old_root", flip_hex(con["old_root"])), "old root"),
        (altered(con, "root", flip_hex(con["root"])), "gives root"),
        (altered(con, "path", [flip_hex(con["path"][0]), *con["path"][1:]]), "gives"),
        (altered(con, "path", con["path"] + con["path"][:1]), "need a path of"),
        (altered(con, "old_size", 22), "exceeds"),
    ]
    for doc, expected in cases:
        ok, message = verify_proof_document(doc)
        assert not ok, doc
        assert "invalid" in message
        assert expected in message, message
        # a digest matching the document's tree head does not rescue a bad proof
        head = {"size": doc["size"], "root": doc["root"]}
        assert verify_proof_document(doc, head) == (False, message)
        if doc["kind"] == "consistency":
            old_head = {"size": doc["old_size"], "root": doc["old_root"]}
            assert verify_proof_document(doc, old_head) == (False, message)

    # valid proofs, but of another tree head than the published digest
    other = {"size": 20, "root": root(hashes[:20]).hex()}
    for doc in (inc, con):
        ok, message = verify_proof_document(doc, other)
        assert not ok
        assert "published digest" in message
        ok, message = verify_proof_document(doc, {**digest, "root": flip_hex(digest["root"])})
        assert not ok
    for bad_digest in ([], {"size": 21}, {"root": digest["root"]}, {**digest, "size": "21"}):
        ok, message = verify_proof_document(inc, bad_digest)  # type: ignore[arg-type]
        assert not ok
        assert "digest" in message
    # extra keys (e.g. an event id added by the CLI) are ignored
    assert verify_proof_document({**inc, "event": "E-1"}, {**digest, "at": "now"})[0]


def test_document_rejects_non_canonical_values() -> None:
    hashes = hashed(entries(9))
    inc = inclusion_proof_document(hashes, 2)
    assert verify_proof_document({**inc, "leaf_hash": inc["leaf_hash"].upper()})[0]
    for key, value in [
        ("index", True),
        ("index", 2.0),
        ("index", "2"),
        ("index", -1),
        ("size", 2**64),
        ("leaf_hash", inc["leaf_hash"][:-2]),
        ("leaf_hash", inc["leaf_hash"] + "00"),
        ("leaf_hash", " " + inc["leaf_hash"][1:]),
        ("leaf_hash", "zz" + inc["leaf_hash"][2:]),
        ("leaf_hash", bytes.fromhex(inc["leaf_hash"])),
        ("root", None),
        ("path", "".join(inc["path"])),
        ("path", [*inc["path"][:-1], 5]),
        ("path", tuple(inc["path"])),
        ("kind", "Inclusion"),
    ]:
        ok, message = verify_proof_document({**inc, key: value})
        assert not ok, (key, value)
        assert message
    for key in inc:
        doc = {k: v for k, v in inc.items() if k != key}
        ok, message = verify_proof_document(doc)
        assert not ok
        assert repr(key) in message or "kind" in message


class _Hostile(dict):  # type: ignore[type-arg]
    def get(self, *args: Any) -> Any:
        raise RuntimeError("boom")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_document_never_raises_on_hostile_objects() -> None:
    ok, message = verify_proof_document(_Hostile(kind="inclusion"))
    assert not ok
    assert "malformed" in message
    hashes = hashed(entries(3))
    doc = inclusion_proof_document(hashes, 1)
    ok, message = verify_proof_document(doc, _Hostile(size=3))
    assert not ok
    ok, message = verify_proof_document(_Hostile)  # type: ignore[arg-type]
    assert not ok


_json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_KEYS = ["kind", "index", "size", "leaf_hash", "root", "path", "old_size", "old_root"]
_hexish = st.text(alphabet="0123456789abcdefABCDEF xg", min_size=60, max_size=68)
_junk_doc = st.dictionaries(
    st.sampled_from(_KEYS) | st.text(max_size=6),
    st.sampled_from(["inclusion", "consistency"])
    | _json
    | _hexish
    | st.lists(_hexish, max_size=5)
    | st.integers(-(2**70), 2**70),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(doc=_junk_doc | _json, digest=st.none() | _junk_doc | _json)
def test_document_garbage_never_raises(doc: Any, digest: Any) -> None:
    result = verify_proof_document(doc, digest)
    assert isinstance(result, tuple)
    assert len(result) == 2
    ok, message = result
    assert ok is False or _trivially_valid(doc), (doc, message)
    assert isinstance(message, str)
    assert message


def _trivially_valid(doc: Any) -> bool:
    """The only junk that can verify without breaking SHA-256: proofs with an empty path."""
    if doc.get("path") != []:
        return False
    if doc.get("kind") == "inclusion":
        return doc.get("size") == 1 and doc.get("leaf_hash", "").lower() == doc["root"].lower()
    old_root, new_root = doc.get("old_root", "").lower(), doc.get("root", "").lower()
    if doc.get("old_size") == 0:
        return old_root == EMPTY_ROOT.hex()
    return doc.get("old_size") == doc.get("size") and old_root == new_root


# Junk that can never be a valid value for any key: no ints, no 64-hex strings.
_not_a_value = (
    st.none()
    | st.booleans()
    | st.floats()
    | st.text(max_size=20)
    | st.lists(st.integers() | st.text(max_size=3), min_size=1, max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 20),
    kind=st.sampled_from(["inclusion", "consistency"]),
    data=st.data(),
)
def test_document_with_one_field_broken(n: int, kind: str, data: st.DataObject) -> None:
    hashes = hashed(entries(n, b"broken"))
    if kind == "inclusion":
        doc = inclusion_proof_document(hashes, data.draw(st.integers(0, n - 1)))
    else:
        doc = consistency_proof_document(hashes, data.draw(st.integers(0, n)))
    assert verify_proof_document(doc)[0]
    key = data.draw(st.sampled_from(sorted(doc)), label="key")
    value = data.draw(_not_a_value, label="value")
    assume(value != doc[key])
    broken = {**doc, key: value}
    if data.draw(st.booleans(), label="delete instead"):
        del broken[key]
    ok, message = verify_proof_document(broken)
    assert ok is False
    assert isinstance(message, str)
    assert message
