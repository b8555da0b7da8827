"""Agreement statistics for nominal labels: the one implementation every stage uses.

A *unit* is one item and the labels its raters gave it, one per rater (pick each rater's latest vote
before calling these: a superseded vote is not another rater). Labels are any hashable values.

- percent agreement: the share of agreeing pairs among all pairs of ratings on the same unit;
- Cohen's κ (Cohen 1960): two raters' labels of the same items, κ = (p_o − p_e) / (1 − p_e);
- Fleiss' κ (Fleiss 1971), in its form for a varying number of raters per unit: P̄ is the mean of the
  per-unit agreement P_i = Σ_j n_ij (n_ij − 1) / (n_i (n_i − 1)), P_e = Σ_j p_j² with p_j the share of
  all ratings in label j;
- Krippendorff's α (nominal, Krippendorff 2011): α = 1 − D_o / D_e from the coincidence matrix of
  pairable values, which handles missing ratings.

Units with fewer than two ratings carry no information about agreement and are left out.

When a statistic is undefined it is None, never a number (docs/annotating.md, "When a statistic is
undefined"): no unit with two ratings (one rater, or raters who never rated the same item), and, for
κ and α, every rating with one label — their formula is then 0 / 0: ratings that never vary cannot
tell agreement from chance. scikit-learn, statsmodels and the `krippendorff` package all refuse a
number there too (NaN or an error). `undefined_reason` says which case applies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

Units = Iterable[Sequence[Hashable]]

NO_OVERLAP = "no item has labels from two raters"
ONE_LABEL = "every label is the same, so agreement cannot be told from chance"


def _pairable(units: Units) -> list[Counter]:
    """Label counts of each unit with at least two ratings."""
    return [Counter(labels) for labels in units if len(labels) >= 2]


def undefined_reason(units: Units, chance_corrected: bool = True) -> str | None:
    """Why the statistics of these units are None (`chance_corrected`: κ and α, which also need two
    labels), or None when they are defined."""
    counts = _pairable(units)
    if not counts:
        return NO_OVERLAP
    if chance_corrected and len(set().union(*counts)) < 2:
        return ONE_LABEL
    return None


def percent_agreement(units: Units) -> float | None:
    """Agreeing pairs of ratings / all pairs of ratings on the same unit (pooled over units)."""
    agree = pairs = 0
    for c in _pairable(units):
        n = sum(c.values())
        agree += sum(k * (k - 1) for k in c.values())
        pairs += n * (n - 1)
    return agree / pairs if pairs else None


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's κ for two raters' labels of the same items (a[i] and b[i] label item i)."""
    if len(a) != len(b):
        raise ValueError(f"Cohen's kappa needs the same items from both raters: got {len(a)} and {len(b)} labels")
    n = len(a)
    if n == 0:
        return None
    ca, cb = Counter(a), Counter(b)
    chance = sum(ca[k] * cb[k] for k in ca)  # n² · p_e, exact in integers
    if chance == n * n:  # both raters used one and the same label throughout
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True))
    return (observed * n - chance) / (n * n - chance)


def fleiss_kappa(units: Units) -> float | None:
    """Fleiss' κ over units with at least two ratings (any number of raters per unit)."""
    counts = _pairable(units)
    if not counts:
        return None
    totals: Counter = Counter()
    p_bar = 0.0
    for c in counts:
        n = sum(c.values())
        p_bar += sum(k * (k - 1) for k in c.values()) / (n * (n - 1))
        totals.update(c)
    if len(totals) < 2:
        return None
    p_bar /= len(counts)
    n_all = sum(totals.values())
    p_e = sum((k / n_all) ** 2 for k in totals.values())
    return (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha(units: Units) -> float | None:
    """Nominal Krippendorff's α over units with at least two ratings (missing ratings allowed)."""
    disagreeing = 0.0
    totals: Counter = Counter()
    for c in _pairable(units):
        m = sum(c.values())
        # off-diagonal coincidences of this unit: Σ_{j≠k} n_j n_k / (m − 1)
        disagreeing += (m * m - sum(k * k for k in c.values())) / (m - 1)
        totals.update(c)
    return krippendorff_alpha_from_sums(disagreeing, totals)


def krippendorff_alpha_from_sums(disagreeing: float, totals: Mapping[Hashable, float]) -> float | None:
    """Nominal α from its sufficient statistics, for callers that aggregate in SQL: `disagreeing` is
    Σ over pairable units of (m_u² − Σ_c n_uc²) / (m_u − 1), `totals` the pairable values per label."""
    used = {k: v for k, v in totals.items() if v}
    n = sum(used.values())
    if n <= 1:
        return None
    if len(used) < 2:
        return None
    expected = n * n - sum(v * v for v in used.values())  # n (n − 1) · D_e
    return 1.0 - (n - 1) * disagreeing / expected


# Annotator types whose later vote on an item replaces their earlier one, as curation's
# `latest_human_vote` does (curate/votes.py). Imported rows keep every vote: one imported annotator
# name often stands for many unnamed people.
REVOTING_TYPES = ("human", "adjudicator")


def latest_vote_sql(item: str) -> str:
    """A DuckDB QUALIFY condition over judgements that keeps each person's latest vote on `item` (an
    SQL expression naming the item): the latest created_at, the greater judgement_id on a tie."""
    types = ", ".join(f"'{t}'" for t in REVOTING_TYPES)
    return (
        f"annotator_type NOT IN ({types}) OR row_number() OVER "
        f"(PARTITION BY {item}, annotator ORDER BY created_at DESC, judgement_id DESC) = 1"
    )
