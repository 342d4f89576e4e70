"""Merkle trees for the ledger's tamper evidence (SPEC section 5).

SPEC section 5 requires every stored event to be covered by a Merkle tree "RFC 6962
style", a published digest ``(size, root)``, and inclusion and consistency proofs
that let an auditor check one event, or an older digest, without trusting the
database. This module is that tree, dependency free (``hashlib`` only):

* hashing with domain separation (RFC 6962 section 2.1, RFC 9162 section 2.1.1):
  a leaf is ``SHA-256(0x00 || entry)``, an interior node ``SHA-256(0x01 || left ||
  right)`` and the empty tree ``SHA-256("")``;
* :func:`root`, the Merkle Tree Hash (MTH) over already-hashed leaves, computed
  level by level;
* :class:`Frontier`, the compact right edge of the tree (the roots of its perfect
  subtrees, RFC 9162 "compact ranges"), so a store can append in O(log n) and
  publish the root without reading the leaves;
* inclusion proofs (RFC 9162 section 2.1.3) and consistency proofs (RFC 9162
  section 2.1.4), with the verification algorithms of sections 2.1.3.2 and 2.1.4.2;
* JSON-friendly proof documents for ``trial-ledger prove`` / ``verify-proof``.

Leaf indexes are 0-based (the ledger's notification ids are 1-based: the event at
position ``p`` is leaf ``p - 1``). All hashes are 32-byte :class:`bytes`.

How the level-by-level computation matches RFC 6962's recursive definition: level
0 holds the leaf hashes; level ``l + 1`` pairs adjacent nodes of level ``l`` and
carries a trailing unpaired node up unchanged. Node ``j`` of level ``l`` is then
the MTH of leaves ``[j * 2**l, min((j + 1) * 2**l, n))``, which is exactly the
subtree the recursion (split at the largest power of two smaller than ``n``)
produces, so roots and proofs are identical to RFC 6962's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "Frontier",
    "consistency_proof",
    "consistency_proof_document",
    "inclusion_proof",
    "inclusion_proof_document",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
    "verify_proof_document",
]

HASH_SIZE = 32
"""Length in bytes of every hash (SHA-256)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""MTH({}) = SHA-256() of the empty string (RFC 6962 section 2.1)."""

_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")


def leaf_hash(entry: bytes) -> bytes:
    """Hash one leaf: ``SHA-256(0x00 || entry)`` (RFC 6962 section 2.1; SPEC section 5)."""
    return _sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: ``SHA-256(0x01 || left || right)`` (RFC 6962 section 2.1)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


# --------------------------------------------------------------------------- helpers


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass but never a size or an index


def _leaves(leaf_hashes: Iterable[bytes], size: int | None) -> list[bytes]:
    """The first ``size`` leaf hashes (all of them when ``size`` is None) as a list.

    Raises ValueError when there are fewer than ``size`` or one is not 32 bytes, and
    TypeError when one is not bytes-like.
    """
    if size is None:
        leaves = list(leaf_hashes)
    else:
        if not _is_int(size) or size < 0:
            raise ValueError(f"size must be a non-negative int, got {size!r}")
        leaves = list(islice(leaf_hashes, size))
        if len(leaves) < size:
            raise ValueError(f"size {size} exceeds the {len(leaves)} leaf hashes given")
    # Fast path: map() over builtins runs at C speed (about 20 ms per million leaves).
    if leaves and (set(map(type, leaves)) != {bytes} or set(map(len, leaves)) != {HASH_SIZE}):
        for i, h in enumerate(leaves):
            if not isinstance(h, bytes | bytearray | memoryview):
                raise TypeError(f"leaf hash #{i} is {type(h).__name__}, not bytes")
            h = bytes(h)
            if len(h) != HASH_SIZE:
                raise ValueError(f"leaf hash #{i} has {len(h)} bytes, not {HASH_SIZE}")
            leaves[i] = h
    return leaves


def _next_level(level: list[bytes]) -> list[bytes]:
    """Pair adjacent nodes; a trailing unpaired node is carried up unchanged."""
    sha, prefix = _sha256, _NODE_PREFIX
    nxt = [sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)]
    if len(level) & 1:
        nxt.append(level[-1])
    return nxt


def _collect(
    leaves: list[bytes],
    wanted: Iterable[tuple[int, int]] = (),
) -> tuple[bytes, dict[tuple[int, int], bytes]]:
    """Hash the tree over ``leaves`` level by level, keeping the ``wanted`` nodes.

    ``wanted`` holds ``(level, index)`` pairs. Returns ``(root, {(level, index): hash})``.
    Each level is dropped once the next is built, so memory stays O(n).
    """
    if not leaves:
        return EMPTY_ROOT, {}
    by_level: dict[int, list[int]] = {}
    for lvl, idx in wanted:
        by_level.setdefault(lvl, []).append(idx)
    found: dict[tuple[int, int], bytes] = {}
    level, lvl = leaves, 0
    while True:
        for idx in by_level.get(lvl, ()):
            found[(lvl, idx)] = level[idx]
        if len(level) == 1:
            return level[0], found
        level = _next_level(level)
        lvl += 1


def _path_nodes(level: int, index: int, size: int) -> list[tuple[int, int]]:
    """The siblings, bottom-up, on the way from node ``(level, index)`` to the root.

    A sibling that does not exist at some level (the node is the trailing, carried-up
    one) is skipped; this is RFC 9162's PATH / SUBPROOF recursion unrolled.
    """
    nodes = []
    width = (size + (1 << level) - 1) >> level
    while width > 1:
        sibling = index ^ 1
        if sibling < width:
            nodes.append((level, sibling))
        index >>= 1
        width = (width + 1) >> 1
        level += 1
    return nodes


def _inclusion_nodes(index: int, size: int) -> list[tuple[int, int]]:
    return _path_nodes(0, index, size)


def _consistency_nodes(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Nodes of PROOF(old_size, D[new_size]) (RFC 9162 section 2.1.4.1), in order.

    The largest perfect subtree ending at ``old_size`` (omitted when it is the whole
    old tree, i.e. ``old_size`` is a power of two: the verifier holds that root),
    then the path from it to the root of the new tree.
    """
    if old_size == 0 or old_size == new_size:
        return []
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    head = [] if index == 0 else [(level, index)]
    return head + _path_nodes(level, index, new_size)


def _old_root_nodes(old_size: int) -> list[tuple[int, int]]:
    """The perfect subtrees making up the first ``old_size`` leaves, largest first."""
    return [
        (lvl, (old_size >> lvl) - 1)
        for lvl in range(old_size.bit_length() - 1, -1, -1)
        if old_size >> lvl & 1
    ]


def _fold(subtree_roots: Sequence[bytes]) -> bytes:
    """Root of a tree from its perfect-subtree roots, largest (leftmost) first."""
    if not subtree_roots:
        return EMPTY_ROOT
    acc = subtree_roots[-1]
    for h in reversed(subtree_roots[:-1]):
        acc = node_hash(h, acc)
    return acc


# --------------------------------------------------------------------------- root


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of already-hashed leaves (RFC 6962 section 2.1; SPEC section 5).

    ``root([]) == EMPTY_ROOT``. Iterative, level by level: n - 1 node hashes and
    O(n) memory, about a second for a million leaves.
    """
    return _collect(_leaves(leaf_hashes, None))[0]


# --------------------------------------------------------------------------- frontier


class Frontier:
    """The compact right edge of a Merkle tree (SPEC section 5; RFC 9162 compact ranges).

    Holds only the roots of the perfect subtrees that the binary decomposition of
    ``size`` splits the tree into, largest (leftmost) first: ``size.bit_count()``
    hashes, at most 64. Appending a leaf costs O(log n) hashes (amortised O(1)) and
    :meth:`root` O(log n), with no access to the leaves, so a store can keep the
    tree head current on every append and persist it in one row (:meth:`to_bytes`).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._size = 0
        self._hashes: list[bytes] = []
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (``leaf_hash(entry)``, 32 bytes)."""
        self.extend((leaf_hash,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order. All or nothing: on a bad hash nothing changes."""
        stack = list(self._hashes)
        size = self._size
        sha, prefix = _sha256, _NODE_PREFIX
        for h in leaf_hashes:
            if type(h) is not bytes:
                if not isinstance(h, bytearray | memoryview):
                    raise TypeError(f"leaf hash #{size} is {type(h).__name__}, not bytes")
                h = bytes(h)
            if len(h) != HASH_SIZE:
                raise ValueError(f"leaf hash #{size} has {len(h)} bytes, not {HASH_SIZE}")
            # Each trailing 1 bit of the old size is a perfect subtree the new leaf
            # completes: merge with it and carry up, like binary addition.
            s = size
            while s & 1:
                h = sha(prefix + stack.pop() + h).digest()
                s >>= 1
            stack.append(h)
            size += 1
        self._hashes = stack
        self._size = size

    def extend_range(self, following: CompactRange) -> None:
        """Append the leaves of ``following``, which must start where this tree ends, by its subtrees."""
        if following.start != self._size:
            raise ValueError(f"a range starting at leaf {following.start} cannot follow {self._size} leaves")
        stack = list(self._hashes)
        size = self._size
        sha, prefix = _sha256, _NODE_PREFIX
        for height, h in following.nodes:
            # Each subtree starts at a multiple of its width: carry it up like ``extend`` carries a leaf.
            s = size >> height
            while s & 1:
                h = sha(prefix + stack.pop() + h).digest()
                s >>= 1
            stack.append(h)
            size += 1 << height
        self._hashes = stack
        self._size = size

    def root(self) -> bytes:
        """MTH of the leaves appended so far (``EMPTY_ROOT`` when none), O(log n)."""
        return _fold(self._hashes)

    def copy(self) -> Frontier:
        """An independent copy."""
        other = Frontier()
        other._size = self._size
        other._hashes = list(self._hashes)
        return other

    def to_bytes(self) -> bytes:
        """Serialise: 8-byte big-endian size, then the subtree roots, largest first.

        ``8 + 32 * size.bit_count()`` bytes (at most 2,056).
        """
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Frontier:
        """Inverse of :meth:`to_bytes`; ValueError if ``data`` is not a valid frontier."""
        data = bytes(data)
        if len(data) < 8:
            raise ValueError("frontier data shorter than its 8-byte size header")
        size = int.from_bytes(data[:8], "big")
        expected = 8 + HASH_SIZE * size.bit_count()
        if len(data) != expected:
            raise ValueError(f"frontier of size {size} needs {expected} bytes, got {len(data)}")
        frontier = cls()
        frontier._size = size
        frontier._hashes = [data[i : i + HASH_SIZE] for i in range(8, expected, HASH_SIZE)]
        return frontier

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


class CompactRange:
    """The perfect subtrees covering leaves ``[start, end)`` of a tree, left to right (RFC 9162).

    What :class:`Frontier` is to the leaves ``[0, size)``, for leaves that start
    further on: a part of the tree hashed on its own (``verify`` hashes two halves
    of a ledger at once, issue 14), joined to the frontier of the leaves before it
    with :meth:`Frontier.extend_range`.  Each subtree is ``(height, hash)``, its
    first leaf a multiple of ``2 ** height``; at most about ``2 * log2(end)`` of them.
    """

    __slots__ = ("_end", "_nodes", "_start")

    def __init__(self, start: int) -> None:
        if not _is_int(start) or start < 0:
            raise ValueError(f"start must be a non-negative int, got {start!r}")
        self._start = self._end = start
        self._nodes: list[tuple[int, bytes]] = []

    @property
    def start(self) -> int:
        return self._start

    @property
    def end(self) -> int:
        """The leaf after the last one appended."""
        return self._end

    @property
    def nodes(self) -> tuple[tuple[int, bytes], ...]:
        """The subtrees, ``(height, hash)``, left to right."""
        return tuple(self._nodes)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order. All or nothing: on a bad hash nothing changes."""
        nodes = list(self._nodes)
        end = self._end
        sha, prefix = _sha256, _NODE_PREFIX
        for h in _leaves(leaf_hashes, None):
            height, first = 0, end
            # A right child (its first leaf has bit ``height`` set) whose left sibling is the
            # last subtree: merge with it and carry up.  A sibling that would start before
            # ``start`` is not here: the subtree stays as it is.
            while nodes and nodes[-1][0] == height and first >> height & 1:
                h = sha(prefix + nodes.pop()[1] + h).digest()
                first -= 1 << height
                height += 1
            nodes.append((height, h))
            end += 1
        self._nodes = nodes
        self._end = end

    def copy(self) -> CompactRange:
        """An independent copy."""
        other = CompactRange(self._start)
        other._end = self._end
        other._nodes = list(self._nodes)
        return other


# --------------------------------------------------------------------------- inclusion


def _inclusion_path_and_root(
    leaf_hashes: Sequence[bytes], index: int, size: int | None
) -> tuple[list[bytes], bytes, bytes, int]:
    leaves = _leaves(leaf_hashes, size)
    n = len(leaves)
    if not _is_int(index) or not 0 <= index < n:
        raise ValueError(f"index {index!r} is outside a tree of size {n}")
    nodes = _inclusion_nodes(index, n)
    tree_root, found = _collect(leaves, nodes)
    return [found[node] for node in nodes], tree_root, leaves[index], n


def inclusion_proof(
    leaf_hashes: Sequence[bytes],
    index: int,
    size: int | None = None,
) -> list[bytes]:
    """Inclusion proof (audit path) of leaf ``index`` in the tree of the first ``size`` leaves.

    RFC 9162 section 2.1.3.1 (RFC 6962 section 2.1.1 PATH(m, D[n])), sibling hashes
    from the leaf up; SPEC section 5. ``size`` defaults to ``len(leaf_hashes)``.
    O(n) hashing. Raises ValueError unless ``0 <= index < size <= len(leaf_hashes)``.
    """
    return _inclusion_path_and_root(leaf_hashes, index, size)[0]


def _root_from_inclusion(
    leaf: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
) -> bytes | None:
    """Steps 1-4 of RFC 9162 section 2.1.3.2; None when the proof has the wrong shape."""
    if not (_is_int(index) and _is_int(size)) or not 0 <= index < size:
        return None
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        return None
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            return None  # proof too long
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None  # sn != 0: proof too short


def verify_inclusion(
    leaf_hash: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes],
    root: bytes,
) -> bool:
    """Check an inclusion proof (RFC 9162 section 2.1.3.2; SPEC section 5).

    True iff ``proof`` shows that ``leaf_hash`` is leaf ``index`` (0-based) of a tree
    of ``size`` leaves whose MTH is ``root``. Never raises for bad sizes or indexes.

    The tree size is bound to the root only by the trusted digest ``(size, root)``:
    a proof whose path has the same shape in two tree sizes verifies for both, so
    callers must take ``size`` and ``root`` together from a published digest.
    """
    try:
        computed = _root_from_inclusion(leaf_hash, index, size, proof)
    except TypeError:
        return False
    return computed is not None and computed == root


# --------------------------------------------------------------------------- consistency


def _consistency_path_and_roots(
    leaf_hashes: Sequence[bytes], old_size: int, new_size: int | None
) -> tuple[list[bytes], bytes, bytes, int]:
    leaves = _leaves(leaf_hashes, new_size)
    n = len(leaves)
    if not _is_int(old_size) or not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size!r} is outside 0..{n}")
    nodes = _consistency_nodes(old_size, n)
    old_nodes = _old_root_nodes(old_size)
    new_root, found = _collect(leaves, nodes + old_nodes)
    old_root = _fold([found[node] for node in old_nodes])
    return [found[node] for node in nodes], old_root, new_root, n


def consistency_proof(
    leaf_hashes: Sequence[bytes], old_size: int, new_size: int | None = None
) -> list[bytes]:
    """Consistency proof between the trees of the first ``old_size`` and ``new_size`` leaves.

    RFC 9162 section 2.1.4.1 (RFC 6962 section 2.1.2 PROOF(m, D[n])); SPEC section 5.
    ``new_size`` defaults to ``len(leaf_hashes)``. Empty when ``old_size`` is 0 or
    equals ``new_size``. O(n) hashing. Raises ValueError unless
    ``0 <= old_size <= new_size <= len(leaf_hashes)``.
    """
    return _consistency_path_and_roots(leaf_hashes, old_size, new_size)[0]


def _roots_from_consistency(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes] | None:
    """Steps 1-6 of RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``.

    Returns the recomputed ``(old_root, new_root)``, or None when the proof has the
    wrong shape for the two sizes.
    """
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        return None
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return None  # proof too long
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return (fr, sr) if sn == 0 else None  # sn != 0: proof too short


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162 section 2.1.4.2; SPEC section 5).

    True iff ``proof`` shows that the tree of ``old_size`` leaves with MTH
    ``old_root`` is a prefix of the tree of ``new_size`` leaves with MTH ``new_root``.
    Edge cases outside the RFC algorithm (which assumes ``0 < old_size < new_size``):
    equal sizes need an empty proof and equal roots; ``old_size == 0`` needs an
    empty proof and ``old_root == EMPTY_ROOT`` (every tree extends the empty tree,
    so ``new_root`` cannot be checked then). Never raises for bad sizes.
    """
    try:
        if not (_is_int(old_size) and _is_int(new_size)) or not 0 <= old_size <= new_size:
            return False
        if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
            return False
        if old_size == new_size:
            return not proof and old_root == new_root and (old_size > 0 or old_root == EMPTY_ROOT)
        if old_size == 0:
            return not proof and old_root == EMPTY_ROOT
        roots = _roots_from_consistency(old_size, new_size, old_root, proof)
    except TypeError:
        return False
    return roots is not None and roots == (old_root, new_root)


# --------------------------------------------------------------------------- documents


def inclusion_proof_document(
    leaf_hashes: Sequence[bytes], index: int, size: int | None = None
) -> dict[str, Any]:
    """A JSON-ready inclusion proof for ``trial-ledger prove`` (SPEC section 5).

    ``{"kind": "inclusion", "index", "size", "leaf_hash", "root", "path": [hex, ...]}``
    with lowercase hex hashes; ``index`` is 0-based. One O(n) pass computes both
    the path and the root. Raises ValueError like :func:`inclusion_proof`.
    """
    path, tree_root, leaf, n = _inclusion_path_and_root(leaf_hashes, index, size)
    return {
        "kind": "inclusion",
        "index": index,
        "size": n,
        "leaf_hash": leaf.hex(),
        "root": tree_root.hex(),
        "path": [p.hex() for p in path],
    }


def consistency_proof_document(
    leaf_hashes: Sequence[bytes], old_size: int, new_size: int | None = None
) -> dict[str, Any]:
    """A JSON-ready consistency proof for ``trial-ledger prove`` (SPEC section 5).

    ``{"kind": "consistency", "old_size", "old_root", "size", "root", "path": [hex, ...]}``
    with lowercase hex hashes. One O(n) pass computes the path and both roots.
    Raises ValueError like :func:`consistency_proof`.
    """
    path, old_root, new_root, n = _consistency_path_and_roots(leaf_hashes, old_size, new_size)
    return {
        "kind": "consistency",
        "old_size": old_size,
        "old_root": old_root.hex(),
        "size": n,
        "root": new_root.hex(),
        "path": [p.hex() for p in path],
    }


class _Malformed(Exception):
    """A proof document or digest that cannot be read."""


def _get_size(doc: Mapping[str, Any], key: str, what: str) -> int:
    if key not in doc:
        raise _Malformed(f"{what} has no {key!r}")
    value = doc[key]
    if not _is_int(value) or not 0 <= value < 1 << 64:
        raise _Malformed(f"{what} {key!r} must be an integer in 0..2**64-1, got {_show(value)}")
    return value


def _get_hash(doc: Mapping[str, Any], key: str, what: str) -> bytes:
    if key not in doc:
        raise _Malformed(f"{what} has no {key!r}")
    return _parse_hex(doc[key], f"{what} {key!r}")


def _parse_hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
        raise _Malformed(f"{what} must be 64 hex digits, got {_show(value)}")
    return bytes.fromhex(value)


def _get_path(doc: Mapping[str, Any], what: str) -> list[bytes]:
    if "path" not in doc:
        raise _Malformed(f"{what} has no 'path'")
    path = doc["path"]
    if not isinstance(path, list):
        raise _Malformed(f"{what} 'path' must be a list of hex hashes, got {_show(path)}")
    return [_parse_hex(p, f"{what} path[{i}]") for i, p in enumerate(path)]


def _show(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not escape
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _short(h: bytes) -> str:
    return h.hex()[:16] + "..."


_Head = tuple[int, bytes]  # a tree head: (size, root)


def _check_inclusion(doc: Mapping[str, Any]) -> tuple[bool, str, list[_Head]]:
    what = "inclusion proof"
    index = _get_size(doc, "index", what)
    size = _get_size(doc, "size", what)
    leaf = _get_hash(doc, "leaf_hash", what)
    tree_root = _get_hash(doc, "root", what)
    path = _get_path(doc, what)
    heads = [(size, tree_root)]
    if index >= size:
        return False, f"index {index} is outside a tree of size {size}", heads
    expected = len(_inclusion_nodes(index, size))
    if len(path) != expected:
        return (
            False,
            (
                f"leaf {index} of a tree of size {size} needs a path of {expected} hashes, "
                f"the document has {len(path)}"
            ),
            heads,
        )
    computed = _root_from_inclusion(leaf, index, size, path)
    if computed is None:  # unreachable once the length matches; kept as a guard
        return False, f"the path does not fit leaf {index} of a tree of size {size}", heads
    if computed != tree_root:
        return (
            False,
            (
                f"leaf hash {_short(leaf)} at index {index} with this path gives root "
                f"{computed.hex()}, not the claimed {tree_root.hex()}"
            ),
            heads,
        )
    return (
        True,
        (
            f"leaf hash {leaf.hex()} is leaf {index} (0-based) of the tree of size {size} "
            f"with root {tree_root.hex()}"
        ),
        heads,
    )


def _check_consistency(doc: Mapping[str, Any]) -> tuple[bool, str, list[_Head]]:
    what = "consistency proof"
    old_size = _get_size(doc, "old_size", what)
    old_root = _get_hash(doc, "old_root", what)
    size = _get_size(doc, "size", what)
    tree_root = _get_hash(doc, "root", what)
    path = _get_path(doc, what)
    heads = [(size, tree_root), (old_size, old_root)]
    if old_size > size:
        return False, f"old size {old_size} exceeds size {size}", heads
    if verify_consistency(old_size, size, old_root, tree_root, path):
        if old_size == 0:
            detail = "every tree extends the empty tree"
        elif old_size == size:
            detail = "the two tree heads are identical"
        else:
            detail = "the older tree is a prefix of the newer one"
        return (
            True,
            (
                f"the tree of size {old_size} with root {old_root.hex()} is consistent with the "
                f"tree of size {size} with root {tree_root.hex()}: {detail}"
            ),
            heads,
        )
    if old_size == size:
        reason = "equal sizes need an empty path" if path else "equal sizes but different roots"
    elif old_size == 0:
        reason = (
            "an empty old tree needs an empty path"
            if path
            else f"the empty tree's root is {EMPTY_ROOT.hex()}, not {old_root.hex()}"
        )
    else:
        expected = len(_consistency_nodes(old_size, size))
        roots = _roots_from_consistency(old_size, size, old_root, path)
        if len(path) != expected or roots is None:
            sizes = f"{old_size} -> {size}"
            reason = f"sizes {sizes} need a path of {expected} hashes, the document has {len(path)}"
        elif roots[0] != old_root:
            reason = f"the path gives old root {roots[0].hex()}, not the claimed {old_root.hex()}"
        else:
            reason = f"the path gives root {roots[1].hex()}, not the claimed {tree_root.hex()}"
    return False, reason, heads


def _verify_document(doc: object, digest: object | None) -> tuple[bool, str]:
    if not isinstance(doc, Mapping):
        return False, f"malformed input: a proof document must be an object, got {_show(doc)}"
    kind = doc.get("kind")
    if kind == "inclusion":
        ok, message, heads = _check_inclusion(doc)
    elif kind == "consistency":
        ok, message, heads = _check_consistency(doc)
    else:
        kinds = "'inclusion' or 'consistency'"
        return False, f"malformed input: proof document 'kind' must be {kinds}, got {_show(kind)}"
    message = f"{kind} proof {'valid' if ok else 'invalid'}: {message}"
    if not ok or digest is None:
        return ok, message
    if not isinstance(digest, Mapping):
        raise _Malformed(f"the digest must be an object, got {_show(digest)}")
    published = (_get_size(digest, "size", "digest"), _get_hash(digest, "root", "digest"))
    if published == heads[0]:
        return True, f"{message}; its size and root match the published digest"
    if published in heads[1:]:
        return True, f"{message}; its old size and root match the published digest"
    claimed = " or ".join(f"size {n} with root {r.hex()}" for n, r in heads)
    return False, (
        f"{message}; but it does not match the published digest: the digest has size "
        f"{published[0]} with root {published[1].hex()}, the proof {claimed}"
    )


def verify_proof_document(
    doc: dict[str, Any],
    digest: dict[str, Any] | None = None,
) -> tuple[bool, str]:
    """Check a proof document made by ``*_proof_document`` (``verify-proof``; SPEC section 5).

    Checks the document on its own: its hashes recompute to its ``root``
    (inclusion, RFC 9162 section 2.1.3.2) or to both its roots (consistency, RFC 9162
    section 2.1.4.2). When a published ``digest`` ``{"size", "root"}`` is given
    (as printed by ``trial-ledger digest``), the proof's ``size`` and ``root`` must
    also equal it; for a consistency proof the digest may instead be the older
    tree head (``old_size``, ``old_root``), e.g. a digest the auditor kept earlier.
    Unknown keys are ignored. Returns ``(ok, explanation)`` and never raises:
    malformed input (missing keys, wrong types, bad hex) gives ``(False, reason)``.
    """
    try:
        return _verify_document(doc, digest)
    except _Malformed as exc:
        return False, f"malformed input: {exc}"
    except Exception as exc:  # defensive: malformed input must never raise
        return False, f"malformed input: {type(exc).__name__}: {_show(str(exc))}"
