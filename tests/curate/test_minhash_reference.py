"""MinHash-LSH near-duplicate groups held to exact references, on a few thousand generated texts.

Two references, two questions:

1. *Is the LSH step exact?* Given prefkit's own signatures, the groups must be exactly the connected
   components of the graph whose edges are the pairs that share every row of at least one band and
   whose share of equal signature values reaches the threshold — found here by brute force over all
   pairs, with scipy's connected components. No tolerance: any candidate pair left unverified shows.

2. *Do the groups follow the true Jaccard similarity?* Against exact all-pairs Jaccard of the word
   2-gram sets (computed with Python sets and a scipy sparse product), within MinHash's estimation
   error. With k = 128 permutations the estimate is the share X/k of equal values, X ≈ Binomial(k, J),
   and a pair sharing a band of r = 4 rows (of b = 32) is a candidate with probability 1 − (1 − J^r)^b.
   So, with t the threshold:
   - every pair with J ≥ t + 0.15 must be grouped: per pair it is missed with probability at most
     1 − P(candidate)·P(X ≥ tk) (about 1e-6 at J = 0.85), and the test checks first that the sum of
     these bounds over the corpus's pairs is below 0.01;
   - every group must lie inside one connected component of the graph of pairs with J ≥ t − 0.25,
     i.e. two texts far below the threshold are grouped only through a chain of texts each well
     similar to the next: a pair with J < t − 0.25 is accepted with probability at most P(X ≥ tk)
     (about 1e-8 at J = 0.45), and the sum of these over the corpus is checked below 0.01 first.
   Below t + 0.15 and above t − 0.25 the estimate decides, and nothing is asserted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from prefkit.curate.minhash import lsh_groups, near_duplicate_groups, shingles, signatures
from prefkit.curate.recipe import NearDuplicates
from prefkit.curate.text import normalise
from scipy.sparse.csgraph import connected_components
from scipy.stats import binom

CFG = NearDuplicates()  # the default recipe's: word 2-grams, 128 permutations, 32 bands of 4, threshold 0.7
ABOVE, BELOW = 0.15, 0.25


def _vocabulary(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(sorted({"".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(n)}))


def _edit(rng, words: list[str], vocab: np.ndarray, edits: int) -> list[str]:
    w = list(words)
    for _ in range(edits):
        op, i = rng.integers(3), rng.integers(len(w))
        if op == 0:
            w[i] = str(vocab[rng.integers(len(vocab))])
        elif op == 1:
            w.insert(i, str(vocab[rng.integers(len(vocab))]))
        elif len(w) > 5:
            del w[i]
    return w


def mixed_corpus(seed: int = 1, n: int = 3000) -> list[str]:
    """Independent texts (Zipf-distributed words) and 0–3 copies of each with 0–15 word edits:
    Jaccard similarities spread over the whole range around the threshold."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    p = 1 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    texts: list[str] = []
    while len(texts) < n:
        base = [str(v) for v in rng.choice(vocab, rng.integers(20, 60), p=p)]
        texts.append(" ".join(base))
        texts += [" ".join(_edit(rng, base, vocab, int(rng.integers(0, 16)))) for _ in range(rng.integers(0, 4))]
    return texts[:n]


def template_corpus(seed: int = 2, n: int = 2500, templates: int = 3) -> list[str]:
    """Many texts sharing one of a few templates, each with a filler of 2–24 words (from 150 words)
    put in at a random place, and some near copies: huge LSH buckets mixing similar and dissimilar texts."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    forms = [[str(v) for v in rng.choice(vocab, rng.integers(25, 40))] for _ in range(templates)]
    texts: list[str] = []
    for k in range(n):
        if k > 10 and rng.random() < 0.2:
            texts.append(" ".join(_edit(rng, texts[rng.integers(k)].split(), vocab, int(rng.integers(1, 3)))))
            continue
        form = forms[k % templates]
        at = rng.integers(len(form))
        filler = [str(v) for v in rng.choice(vocab[:150], rng.integers(2, 25))]
        texts.append(" ".join(form[:at] + filler + form[at:]))
    return texts


CORPORA = {"mixed": mixed_corpus, "template": template_corpus}


def exact_jaccard(texts: list[str]) -> np.ndarray:
    """All-pairs Jaccard similarity of the texts' word 2-gram sets (the texts are lower-case words and
    single spaces, so splitting on spaces gives the words prefkit's normalisation gives)."""
    ids: dict[tuple[str, str], int] = {}
    rows, cols = [], []
    for d, text in enumerate(texts):
        w = text.split()
        for gram in {(w[i], w[i + 1]) for i in range(len(w) - 1)}:
            rows.append(d)
            cols.append(ids.setdefault(gram, len(ids)))
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(ids)))
    inter = (x @ x.T).toarray()
    size = np.asarray(x.sum(axis=1)).ravel()
    return inter / (size[:, None] + size[None, :] - inter)


def brute_force_groups(sig: np.ndarray, bands: int, threshold: float) -> np.ndarray:
    """Components of {pairs equal on every row of some band, with share of equal values ≥ threshold},
    comparing every pair of documents band by band (a band's rows as one tuple, no hashing)."""
    n, k = sig.shape
    rows = k // bands
    candidate = np.zeros((n, n), dtype=bool)
    for band in range(bands):
        _, code = np.unique(sig[:, band * rows : (band + 1) * rows], axis=0, return_inverse=True)
        code = code.ravel()
        candidate |= code[:, None] == code[None, :]
    i, j = np.nonzero(np.triu(candidate, 1))
    keep = (sig[i] == sig[j]).mean(axis=1) >= threshold
    edges = sp.csr_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    return connected_components(edges, directed=False)[1]


def same_partition(x: np.ndarray, y: np.ndarray) -> bool:
    def canonical(labels):
        first: dict[int, int] = {}
        return [first.setdefault(int(v), i) for i, v in enumerate(labels)]

    return canonical(x) == canonical(y)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_lsh_groups_are_exactly_the_components_of_verified_candidate_pairs(corpus):
    texts = CORPORA[corpus]()
    hashes, owner = shingles(normalise(texts), CFG)
    sig = signatures(hashes, owner, len(texts), CFG.num_perm)
    got = lsh_groups(sig, CFG.bands, CFG.threshold, np.ones(len(texts), dtype=bool))
    assert same_partition(got, brute_force_groups(sig, CFG.bands, CFG.threshold))
    # The pipeline's entry point gives the same groups (these texts have no exact copies).
    assert same_partition(near_duplicate_groups(texts, CFG).group, got)


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_groups_agree_with_exact_jaccard_within_minhash_error(corpus):
    texts = CORPORA[corpus]()
    jac = exact_jaccard(texts)
    group = near_duplicate_groups(texts, CFG).group
    iu = np.triu_indices(len(texts), 1)
    j = jac[iu]
    k, rows, bands = CFG.num_perm, CFG.num_perm // CFG.bands, CFG.bands
    need = math.ceil(CFG.threshold * k - 1e-9)  # X/k ≥ t

    high = j >= CFG.threshold + ABOVE
    p_found = (1 - (1 - j[high] ** rows) ** bands) * binom.sf(need - 1, k, j[high])
    assert (1 - p_found).sum() < 0.01, "the corpus has too many pairs near the bound for this test to be sure"
    grouped = group[iu[0]] == group[iu[1]]
    assert high.sum() > 100 and grouped[high].all()

    # P(X ≥ tk) rises with J: bounding each pair by its 0.01-wide bin's upper edge bounds the sum.
    low = j[j < CFG.threshold - BELOW]
    edges = np.arange(0, CFG.threshold - BELOW + 0.01, 0.01)
    counts, _ = np.histogram(low, bins=edges)
    assert (counts * binom.sf(need - 1, k, np.minimum(edges[1:], CFG.threshold - BELOW))).sum() < 0.01
    near = sp.csr_matrix(np.triu(jac >= CFG.threshold - BELOW, 1))
    _, component = connected_components(near, directed=False)
    # Every group inside one component of the "J ≥ t − 0.25" graph (`group` is each group's first text).
    assert (component == component[group]).all()
    assert (group != np.arange(len(texts))).sum() > 100  # the corpus does have groups


def test_a_pair_in_a_four_document_bucket_is_verified_even_when_neither_is_first_or_next():
    """Four documents share the first 16 bands; documents 1 and 3 also agree on 3 of 4 rows of every
    other band (estimated Jaccard 112/128 = 0.875) but share no other bucket, while every other pair
    agrees on 64 of 128 (0.5). Linking a bucket's members only to its first member and their neighbour
    checks 0–1, 0–2, 0–3, 1–2 and 2–3, never 1–3."""
    rng = np.random.default_rng(5)
    sig = rng.integers(0, 2**32, size=(4, 128), dtype=np.uint64).astype(np.uint32)
    sig[:, :64] = sig[0, :64]  # bands 0–15: one bucket of all four
    sig[3, 64:] = sig[1, 64:]
    sig[3, 64::4] = sig[1, 64::4] + 1  # row 0 of each later band differs: no other shared bucket
    est = (sig[1] == sig[3]).mean()
    assert est == 0.875 and (sig[0] == sig[1]).mean() == 0.5
    labels = lsh_groups(sig, bands=32, threshold=0.7, active=np.ones(4, dtype=bool))
    assert labels.tolist() == [0, 1, 2, 1]


def test_a_large_bucket_of_dissimilar_members_is_checked_in_chunks_with_the_same_result():
    # A template corpus, with the pair-checking chunk made tiny: many chunks, the same groups.
    texts = template_corpus(seed=9, n=600)
    hashes, owner = shingles(normalise(texts), CFG)
    sig = signatures(hashes, owner, len(texts), CFG.num_perm)
    active = np.ones(len(texts), dtype=bool)
    whole = lsh_groups(sig, CFG.bands, CFG.threshold, active)
    assert same_partition(lsh_groups(sig, CFG.bands, CFG.threshold, active, chunk=97), whole)
    assert same_partition(whole, brute_force_groups(sig, CFG.bands, CFG.threshold))
