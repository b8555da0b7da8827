"""Synthetic prompts with planted duplicates, for the dedupe tests and `bench/curate.py`.

`planted_prompts(n)` makes `n` prompts, some of them copies of others: exact copies that differ in
case, whitespace or punctuation, and near copies with a few words changed (plus case/punctuation
noise). `truth[i]` is the index of the original each prompt was made from, so a dedupe can be scored
pair by pair against it (`pair_scores`).
"""

from __future__ import annotations

import numpy as np

_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
_OPENERS = ["Write", "Explain", "Describe", "Summarise", "List", "Compare", "Give", "Tell me", "How do I", "Why does"]


def vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` distinct pseudo-words of 2–4 syllables."""
    words: set[str] = set()
    while len(words) < size:
        n = rng.integers(2, 5, size=size)
        picks = rng.integers(0, len(_SYLLABLES), size=(size, 4))
        words.update("".join(_SYLLABLES[s] for s in row[:k]) for row, k in zip(picks, n, strict=True))
    return np.array(sorted(words)[:size], dtype=object)


def planted_prompts(
    n: int, dup_share: float = 0.3, near_share: float = 0.5, seed: int = 0, min_words: int = 30, max_words: int = 80
) -> tuple[list[str], np.ndarray]:
    """(`n` prompts, truth): `dup_share` of them are copies of earlier originals, of which `near_share`
    have 1–3 words changed and the rest differ only in case, whitespace or punctuation."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, rng)
    zipf = 1.0 / np.arange(1, len(vocab) + 1) ** 0.8
    zipf /= zipf.sum()
    n_dup = int(n * dup_share)
    n_orig = n - n_dup
    lengths = rng.integers(min_words, max_words + 1, size=n_orig)
    flat = rng.choice(len(vocab), size=int(lengths.sum()), p=zipf)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    originals = [[_OPENERS[i % len(_OPENERS)], *vocab[flat[bounds[i] : bounds[i + 1]]]] for i in range(n_orig)]
    texts = [" ".join(w) + "." for w in originals]
    truth = list(range(n_orig))
    sources = rng.integers(0, n_orig, size=n_dup)
    near = rng.random(n_dup) < near_share
    for src, is_near in zip(sources, near, strict=True):
        toks = list(originals[src])
        if is_near:
            for pos in rng.choice(np.arange(1, len(toks)), size=rng.integers(1, 4), replace=False):
                toks[pos] = vocab[rng.integers(len(vocab))]
        texts.append(_noise(toks, rng))
        truth.append(int(src))
    return texts, np.array(truth)


def _noise(toks: list[str], rng: np.random.Generator) -> str:
    """The words joined with case, whitespace and punctuation changed (each with some probability)."""
    text = " ".join(toks)
    kind = rng.integers(0, 4)
    if kind == 0:
        text = text.upper()
    elif kind == 1:
        text = text.title()
    spaces = rng.integers(0, 4, size=3)
    text = text.replace(" ", "  ", int(spaces[0]))  # the first few gaps doubled
    head, _, tail = text.rpartition(" ")
    text = f"{head}{[' ', chr(10), ' ' + chr(9) + ' ', ' '][spaces[1]]}{tail}" if head else text
    if spaces[2] >= 2:
        text = text.replace(" ", ", ", 1)
    ending = ["?", "!", "", " .", "..."][rng.integers(0, 5)]
    return ("  " if rng.random() < 0.2 else "") + text + ending


def pair_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(recall, precision) over pairs of items: a pair is found when both items share a predicted group,
    and true when they share a truth group."""

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) // 2).sum())

    _, pred_counts = np.unique(predicted, return_counts=True)
    _, true_counts = np.unique(truth, return_counts=True)
    _, both_counts = np.unique(np.stack([predicted, truth], axis=1), axis=0, return_counts=True)
    tp = pairs(both_counts)
    true_pairs, found = pairs(true_counts), pairs(pred_counts)
    return (tp / true_pairs if true_pairs else 1.0, tp / found if found else 1.0)
