"""The interval and calibration figures of `prefkit judge-eval`: pure functions, no store.

- `wilson_interval`: the Wilson score interval for a share (Wilson 1927), analytic, for the judge's
  agreement with the human majority; it stays inside [0, 1] and is sensible at 0 % and 100 %.
- `kappa_interval`: Cohen's κ ± z·SE with the large-sample standard error of Fleiss, Cohen & Everitt
  (1969, "Large sample standard errors of kappa and weighted kappa", eq. 13), analytic, not clipped.
- `reliability` and `expected_calibration_error`: the judge's stated probability that the first-shown
  response is better (its first-token `confidence`) against whether the human majority preferred it.
  Binning: `bins` (10) equal-width bins over [0, 1]; bin k holds k/bins < p ≤ (k+1)/bins, the first
  also p = 0 (the convention of sklearn's `calibration_curve(strategy="uniform")`). ECE (Naeini et al.
  2015; Guo et al. 2017) = Σ_k (n_k / N) · |mean p in bin k − share of 1s in bin k|: each bin weighted by
  its count, empty bins adding nothing. None when there is nothing to bin.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Hashable, Sequence
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)  # two-sided 95 %


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """(low, high) of the Wilson score interval for successes / n; None when n is 0."""
    if n <= 0:
        return None
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # at 0 and n the bounds are exactly 0 and 1; the formula leaves a rounding crumb there
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == n else min(1.0, centre + half)


def kappa_interval(a: Sequence[Hashable], b: Sequence[Hashable], z: float = Z95) -> tuple[float, float, float] | None:
    """(κ, low, high) for two raters' labels of the same items (a[i], b[i]); None where κ is undefined
    (no items, or one label throughout). SE from the joint label shares p_ij (rows a, columns b):
    var = [Σ_i p_ii (1 − (p_i· + p_·i)(1 − κ))² + (1 − κ)² Σ_{i≠j} p_ij (p_·i + p_j·)² − (κ − p_e (1 − κ))²]
    / (n (1 − p_e)²)."""
    n = len(a)
    if n != len(b):
        raise ValueError(f"kappa needs the same items from both raters: got {len(a)} and {len(b)} labels")
    if n == 0:
        return None
    labels = sorted(set(a) | set(b), key=repr)
    joint = {(i, j): 0.0 for i in labels for j in labels}
    for x, y in zip(a, b, strict=True):
        joint[(x, y)] += 1 / n
    row = {i: sum(joint[(i, j)] for j in labels) for i in labels}
    col = {j: sum(joint[(i, j)] for i in labels) for j in labels}
    p_e = sum(row[i] * col[i] for i in labels)
    if p_e >= 1 - 1e-12:  # both raters gave one and the same label throughout: 0 / 0
        return None
    p_o = sum(joint[(i, i)] for i in labels)
    kappa = (p_o - p_e) / (1 - p_e)
    diagonal = sum(joint[(i, i)] * (1 - (row[i] + col[i]) * (1 - kappa)) ** 2 for i in labels)
    off = sum(joint[(i, j)] * (col[i] + row[j]) ** 2 for i in labels for j in labels if i != j)
    var = (diagonal + (1 - kappa) ** 2 * off - (kappa - p_e * (1 - kappa)) ** 2) / (n * (1 - p_e) ** 2)
    se = math.sqrt(max(var, 0.0))  # rounding can make a zero variance slightly negative
    return kappa, kappa - z * se, kappa + z * se


def _bin(p: float, bins: int) -> int:
    return bisect_left([k / bins for k in range(1, bins)], p)


def reliability(probs: Sequence[float], outcomes: Sequence[bool], bins: int = 10) -> list[dict]:
    """One dict per bin (all `bins` of them, in order): `low`, `high`, `count`, `confidence` (mean p)
    and `observed` (share of outcomes that are true); the last two None for an empty bin."""
    if len(probs) != len(outcomes):
        raise ValueError(f"reliability needs one outcome per probability: got {len(probs)} and {len(outcomes)}")
    if any(not 0.0 <= p <= 1.0 for p in probs):
        raise ValueError("probabilities must lie in [0, 1]")
    sums = [[0, 0.0, 0] for _ in range(bins)]  # count, Σ p, Σ outcome
    for p, y in zip(probs, outcomes, strict=True):
        s = sums[_bin(p, bins)]
        s[0] += 1
        s[1] += p
        s[2] += bool(y)
    return [
        {
            "low": k / bins,
            "high": (k + 1) / bins,
            "count": n,
            "confidence": total / n if n else None,
            "observed": hits / n if n else None,
        }
        for k, (n, total, hits) in enumerate(sums)
    ]


def expected_calibration_error(table: list[dict]) -> float | None:
    """ECE from a `reliability` table: the count-weighted mean gap between confidence and observation."""
    n = sum(b["count"] for b in table)
    if not n:
        return None
    return sum(b["count"] / n * abs(b["confidence"] - b["observed"]) for b in table if b["count"])
