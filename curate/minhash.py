"""Exact and near-duplicate groups of texts: normalised-text equality, then MinHash-LSH, all in numpy.

No loop runs per document. Shingles of every text are hashed in one array; each of `num_perm` hash
functions (multiply-add over the 64-bit shingle hashes) is applied to the whole array and reduced per
document with `np.minimum.reduceat`; LSH bands are hashed column-wise, documents that share a band
bucket become candidate pairs, a candidate is kept when the share of equal signature values (the
MinHash estimate of Jaccard similarity) reaches the threshold, and groups are the connected components
of the kept pairs (label propagation with pointer jumping). Every candidate pair that could join two
groups is verified (`lsh_groups`), so the groups are exactly those components.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefkit.curate.recipe import NearDuplicates
from prefkit.curate.text import as_array, char_tokens, mix64, ngram_hashes, normalise, word_tokens, words


@dataclass
class Groups:
    """Per text: the index of the first text equal to it after normalisation (`exact`), and of the
    first text of its near-duplicate group (`group`). A text with no duplicate points to itself."""

    exact: np.ndarray
    group: np.ndarray

    @property
    def exact_duplicates(self) -> int:
        return int((self.exact != np.arange(len(self.exact))).sum())

    @property
    def near_duplicates(self) -> int:
        """Texts in a group led by another text that are not exact copies of their own leader."""
        idx = np.arange(len(self.group))
        return int(((self.group != idx) & (self.exact == idx)).sum())


def exact_groups(texts: Sequence[str] | pa.Array, normalised: bool = False) -> np.ndarray:
    """Index of the first text equal to each after `normalise`."""
    enc = pc.dictionary_encode(as_array(texts) if normalised else normalise(texts))
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    first = np.full(len(enc.dictionary), len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first[codes]


def shingles(normalised: pa.Array, cfg: NearDuplicates) -> tuple[np.ndarray, np.ndarray]:
    """(32-bit shingle hashes, owning document) of normalised texts, sorted by document.

    A shingle repeated inside a document stays repeated: it cannot change a minimum.
    """
    if cfg.shingle == "char":
        tokens, doc = char_tokens(normalised, normalised=True)
    else:
        tokens, doc, _ = word_tokens(words(normalised, normalised=True))
    hashes, owner = ngram_hashes(tokens, doc, cfg.ngram)
    return (hashes >> np.uint64(32)).astype(np.uint32), owner


def signatures(hashes: np.ndarray, owner: np.ndarray, n_docs: int, num_perm: int, seed: int = 1) -> np.ndarray:
    """MinHash signatures, shape (n_docs, num_perm), uint32; a document without shingles gets all-max values.

    Permutation k is x → a_k·x + b_k mod 2^32 (a_k odd) over 32-bit hashes: 32-bit multiplies run in SIMD
    lanes, which makes this about 3x faster than 64-bit arithmetic, and the inputs are already well mixed.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32) | np.uint32(1)
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
    sig = np.full((n_docs, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if len(hashes) == 0:
        return sig
    docs, starts = np.unique(owner, return_index=True)
    tmp = np.empty_like(hashes)
    with np.errstate(over="ignore"):
        for k in range(num_perm):
            np.multiply(hashes, a[k], out=tmp)
            tmp += b[k]
            sig[docs, k] = np.minimum.reduceat(tmp, starts)
    return sig


def buckets(sig: np.ndarray, bands: int, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LSH buckets of every band that hold two or more active documents, as (members, bounds):
    bucket k is `members[bounds[k]:bounds[k + 1]]`."""
    n, num_perm = sig.shape
    rows = num_perm // bands
    docs = np.flatnonzero(active)
    if len(docs) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    cols = np.ascontiguousarray(sig[docs].T).astype(np.uint64)  # one contiguous row per permutation
    members, sizes = [], []
    for band in range(bands):
        key = np.full(len(docs), np.uint64(band + 1))
        with np.errstate(over="ignore"):
            for col in range(band * rows, (band + 1) * rows):
                key = key * np.uint64(0x100000001B3) ^ cols[col]
        key = mix64(key)
        order = np.argsort(key)
        ks = key[order]
        start = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
        size = np.diff(np.append(start, len(ks)))
        shared = size >= 2
        if not shared.any():
            continue
        in_shared = np.repeat(shared, size)
        members.append(docs[order[in_shared]])
        sizes.append(size[shared])
    if not members:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    return np.concatenate(members), np.concatenate([[0], np.cumsum(np.concatenate(sizes))])


def lsh_groups(sig: np.ndarray, bands: int, threshold: float, active: np.ndarray, chunk: int = 1_000_000) -> np.ndarray:
    """Per document, the smallest document of its group: the connected components of the graph whose
    edges are the candidate pairs (two documents sharing a bucket of any band) whose estimated Jaccard
    similarity reaches `threshold` (`similar`). Exact: every candidate pair that could join two groups
    is verified.

    A large bucket has size² pairs, so the work goes in two passes. First each member is checked
    against its bucket's first member and its neighbour, which joins the usual bucket, whose members
    are all alike. Then, in the buckets whose members are still in more than one group, every pair
    whose two documents are in different groups *at the time* is verified, and groups merge after each
    `chunk` of pairs: a pair skipped because its documents were already joined stays joined, so the
    result is exact. The pairs go through in order of their first document, so a pair found in several
    bands' buckets falls in one chunk and is checked once; a cheap bound (equal 4-bit slices of the
    signature values, `_fingerprints`) rules most dissimilar pairs out before the full comparison.
    """
    n = sig.shape[0]
    labels = np.arange(n, dtype=np.int64)
    members, bounds = buckets(sig, bands, active)
    if len(members) == 0:
        return labels
    size = np.diff(bounds)
    not_first = np.ones(len(members), dtype=bool)
    not_first[bounds[:-1]] = False
    first = np.repeat(members[bounds[:-1]], size)
    left = np.concatenate([first[not_first], members[np.flatnonzero(not_first) - 1]])
    right = np.concatenate([members[not_first], members[not_first]])
    pairs = _unique_pairs(left, right, n)
    labels = components(n, pairs[similar(sig, pairs, threshold)])

    # Second pass: the buckets not yet in one group, members ascending within each.
    lab = labels[members]
    open_ = np.minimum.reduceat(lab, bounds[:-1]) != np.maximum.reduceat(lab, bounds[:-1])
    if not open_.any():
        return labels
    bucket = np.repeat(np.arange(len(size)), size)
    keep = open_[bucket]
    bucket, docs = bucket[keep], members[keep]
    order = np.lexsort((docs, bucket))
    bucket, docs = bucket[order], docs[order]
    start = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    count = np.diff(np.append(start, len(docs)))
    pos = np.arange(len(docs)) - np.repeat(start, count)
    partners = np.repeat(count, count) - 1 - pos  # the members after this one in its bucket
    rows = np.flatnonzero(partners)
    rows = rows[np.argsort(docs[rows], kind="stable")]  # by first document: a pair's copies meet in one chunk
    row_doc, row_pairs = docs[rows], partners[rows]
    total = np.cumsum(row_pairs)
    need = _matches_needed(sig.shape[1], threshold)
    prints = _fingerprints(sig)
    lo = 0
    while lo < len(rows):
        done = total[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(total, done + chunk, side="right")))
        hi = int(np.searchsorted(row_doc, row_doc[hi - 1], side="right"))  # never split a document's rows
        r, c = rows[lo:hi], row_pairs[lo:hi]
        li = np.repeat(r, c)
        ri = li + 1 + (np.arange(len(li)) - np.repeat(np.cumsum(c) - c, c))
        x, y = docs[li], docs[ri]
        apart = labels[x] != labels[y]
        code = _distinct(x[apart] * n + y[apart])
        x, y = code // n, code % n
        maybe = _equal_slices(prints, x, y) >= need
        x, y = x[maybe], y[maybe]
        ok = similar(sig, np.stack([x, y], axis=1), threshold)
        if ok.any():
            labels = components(n, np.stack([labels[x[ok]], labels[y[ok]]], axis=1))[labels]
        lo = hi
    return labels


def _matches_needed(num_perm: int, threshold: float) -> int:
    """The fewest equal signature values that `similar` accepts (its test is a share ≥ threshold)."""
    shares = np.arange(num_perm + 1) / num_perm
    return int(np.argmax(shares >= threshold)) if shares[-1] >= threshold else num_perm + 1


def _fingerprints(sig: np.ndarray) -> np.ndarray:
    """The low 4 bits of every signature value, 16 to a 64-bit word, shape (n, ceil(num_perm / 16)).

    Equal values have equal low bits, so `_equal_slices` never undercounts the equal values of a pair
    (it overcounts by about 1/16 of the unequal ones) at an eighth of the memory traffic.
    """
    n, k = sig.shape
    width = -(-k // 16)
    padded = np.zeros((n, width * 16), dtype=np.uint64)
    padded[:, :k] = sig & np.uint32(0xF)
    padded = padded.reshape(n, width, 16)
    out = np.zeros((n, width), dtype=np.uint64)
    for j in range(16):
        out |= padded[:, :, j] << np.uint64(4 * j)
    return out


_LOW3 = np.uint64(0x7777777777777777)
_HIGH = np.uint64(0x8888888888888888)
_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _equal_slices(prints: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per pair, the number of equal 4-bit slices: an upper bound on its number of equal values.
    (Padding slices are equal too; they only loosen the bound.)"""
    d = prints[x] ^ prints[y]
    # The top bit of each 4-bit slice of `unequal` is set when the slice of `d` is not zero.
    unequal = ((d & _LOW3) + _LOW3 | d) & _HIGH
    if hasattr(np, "bitwise_count"):  # numpy ≥ 2.0
        bits = np.bitwise_count(unequal).sum(axis=1, dtype=np.int64)
    else:
        bits = _BYTE_BITS[unequal.view(np.uint8)].sum(axis=1, dtype=np.int64)
    return prints.shape[1] * 16 - bits


def _unique_pairs(x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Distinct pairs (i, j), i < j, of documents, shape (m, 2), in ascending order."""
    code = _distinct(np.minimum(x, y) * n + np.maximum(x, y))
    pairs = np.stack([code // n, code % n], axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values. Sorting first is several times faster than `np.unique` on unsorted int64
    here (numpy 2.x hashes unsorted input)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if len(values) else values


def similar(sig: np.ndarray, pairs: np.ndarray, threshold: float, chunk: int = 200_000) -> np.ndarray:
    """Mask of pairs whose estimated Jaccard similarity (share of equal signature values) ≥ threshold."""
    out = np.zeros(len(pairs), dtype=bool)
    for lo in range(0, len(pairs), chunk):
        p = pairs[lo : lo + chunk]
        out[lo : lo + chunk] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1) >= threshold
    return out


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components: per node, the smallest node index of its component."""
    labels = np.arange(n, dtype=np.int64)
    if len(edges) == 0:
        return labels
    i, j = edges[:, 0], edges[:, 1]
    while True:
        low = np.minimum(labels[i], labels[j])
        new = labels.copy()
        np.minimum.at(new, labels[i], low)  # lower the roots, so whole trees move at once
        np.minimum.at(new, labels[j], low)
        while True:  # pointer jumping: every node points at its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, labels):
            return labels
        labels = new


def near_duplicate_groups(texts: Sequence[str] | pa.Array, cfg: NearDuplicates, seed: int = 1) -> Groups:
    """Exact groups by normalised text, then near-duplicate groups over the distinct texts by MinHash-LSH."""
    arr = normalise(texts)
    exact = exact_groups(arr, normalised=True)
    if not cfg.enabled or len(arr) < 2:
        return Groups(exact=exact, group=exact.copy())
    if cfg.num_perm % cfg.bands:
        raise ValueError(f"num_perm ({cfg.num_perm}) must be a multiple of bands ({cfg.bands})")
    leaders = np.flatnonzero(exact == np.arange(len(exact)))
    hashes, owner = shingles(arr.take(pa.array(leaders)), cfg)
    sig = signatures(hashes, owner, len(leaders), cfg.num_perm, seed)
    active = np.zeros(len(leaders), dtype=bool)
    active[np.unique(owner)] = True  # texts without a single word are never near duplicates
    labels = lsh_groups(sig, cfg.bands, cfg.threshold, active)
    group_of_leader = leaders[labels]  # smallest leader index in the component = the first text of the group
    position = np.searchsorted(leaders, exact)
    return Groups(exact=exact, group=group_of_leader[position])
