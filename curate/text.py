"""Text normalisation and word n-gram hashing, vectorised over whole columns with pyarrow and numpy.

Two texts are exact duplicates when they are equal after `normalise` (Unicode NFKC, case folded,
runs of whitespace made one space, trimmed). Near-duplicate detection and decontamination work on
`words`: the normalised text with punctuation removed, split on whitespace.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def as_array(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(texts, type=pa.large_string())
    texts = texts.cast(pa.large_string())
    return texts.fill_null("") if texts.null_count else texts  # fill_null imports pandas: skip it when it can


def normalise(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """NFKC, lower case, whitespace collapsed and trimmed: the key of exact deduplication."""
    arr = pc.utf8_normalize(as_array(texts), form="NFKC")
    arr = pc.utf8_lower(arr)
    # Only runs of 2+ whitespace characters and single non-space ones are rewritten: a pattern that
    # matched every single space would make Arrow's regex engine ~5x slower on ordinary text.
    arr = pc.replace_substring_regex(arr, pattern=r"\s\s+|[\t\n\r\f\v\x{85}\x{2028}\x{2029}]", replacement=" ")
    return pc.utf8_trim_whitespace(arr)


def words(texts: Sequence[str] | pa.Array | pa.ChunkedArray, normalised: bool = False) -> pa.ListArray:
    """Each text's words: normalised, punctuation and symbols dropped (letters, digits and marks stay).

    The lists may hold empty strings where punctuation stood; `word_tokens` skips them.
    """
    arr = as_array(texts) if normalised else normalise(texts)
    arr = pc.replace_substring_regex(arr, pattern=r"[^\p{L}\p{N}\p{M} ]+", replacement=" ")
    return pc.split_pattern(arr, pattern=" ")


def mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64): spreads the bits of integer ids into well-mixed hashes."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ngram_hashes(
    token_ids: np.ndarray, doc: np.ndarray, n: int, keep_short: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every run of `n` consecutive tokens that lies inside one document.

    token_ids: int64 id per token, documents back to back; doc: the document index of each token
    (non-decreasing). Returns (hashes uint64, document index of each n-gram), sorted by document. A
    document shorter than `n` tokens keeps its single tokens instead, so it still has a fingerprint.
    """
    if len(token_ids) == 0:
        return np.zeros(0, dtype=np.uint64), doc
    h = mix64(np.arange(int(token_ids.max()) + 1, dtype=np.uint64))[token_ids]  # hash the vocabulary once
    if n <= 1:
        return h, doc
    m = len(h)
    if m < n:
        starts = np.zeros(0, dtype=np.int64)
    else:
        starts = np.arange(m - n + 1)
    acc = h[starts].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            acc = acc * np.uint64(0x100000001B3) + h[starts + k]
    acc = mix64(acc)
    whole = doc[starts] == doc[starts + n - 1]
    hashes, owner = acc[whole], doc[starts][whole]
    counts = np.bincount(doc)
    short = (counts > 0) & (counts < n)
    if keep_short and short.any():
        in_short = short[doc]
        hashes = np.concatenate([hashes, h[in_short]])
        owner = np.concatenate([owner, doc[in_short]])
        order = np.argsort(owner, kind="stable")
        hashes, owner = hashes[order], owner[order]
    return hashes, owner


def word_tokens(lists: pa.ListArray, vocab: pa.Array | None = None) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(token ids, document index per token, vocabulary) of lists of words.

    Ids index the returned vocabulary; pass `vocab` from an earlier call to keep ids comparable across
    corpora (words new to it get new ids after the old ones).
    """
    flat = lists.flatten()
    doc = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    flat = flat.filter(pa.array(keep))
    doc = doc[keep]
    if vocab is not None:
        flat = pa.concat_arrays([vocab.cast(flat.type), flat])
    enc = (
        pc.dictionary_encode(flat).combine_chunks() if isinstance(flat, pa.ChunkedArray) else pc.dictionary_encode(flat)
    )
    ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if vocab is not None:
        ids = ids[len(vocab) :]
    return ids, doc, enc.dictionary


def char_tokens(texts: pa.Array, normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(byte value per character, document index) of the texts with punctuation dropped and one space
    between words.

    Bytes, not code points: a multi-byte UTF-8 character becomes several tokens, which only makes
    the shingles a little finer; equal texts still give equal tokens.
    """
    arr = as_array(texts) if normalised else normalise(texts)
    arr = pc.replace_substring_regex(arr, pattern=r"[^\p{L}\p{N}\p{M} ]+", replacement=" ")
    enc = pc.cast(arr, pa.large_binary())
    offsets = np.frombuffer(enc.buffers()[1], dtype=np.int64)[enc.offset : enc.offset + len(enc) + 1]
    data = np.frombuffer(enc.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    doc = np.repeat(np.arange(len(enc)), np.diff(offsets))
    space = data == 32
    prev_space = np.ones(len(data), dtype=bool)  # a leading space of a document goes too
    prev_space[1:] = space[:-1] & (doc[1:] == doc[:-1])
    keep = ~(space & prev_space)
    return data[keep].astype(np.int64), doc[keep]
