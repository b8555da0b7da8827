"""prefkit.annotate.agreement against independent implementations: scikit-learn's Cohen's κ, statsmodels'
Fleiss' κ, the `krippendorff` package's α, and plain re-computations from each statistic's definition,
on seeded random units (2–6 raters, missing ratings, 2–4 labels) and on the edge cases where a
statistic is undefined, and the curation report's α, which aggregates in SQL. Tolerance 1e-9 throughout; an undefined statistic (None here) must be one the
reference also refuses (NaN or an error)."""

from __future__ import annotations

import math
import random
import warnings
from itertools import combinations, permutations

import duckdb
import krippendorff
import numpy as np
import pyarrow as pa
import pytest
from prefkit.annotate import agreement
from prefkit.curate import report
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

TOL = 1e-9
TRIALS = 400


def _random_matrix(rng: random.Random, equal_n: bool = False) -> list[list[str | None]]:
    """raters × items, None where a rater did not rate the item."""
    raters, items = rng.randint(2, 6), rng.randint(1, 25)
    labels = ["first", "second", "tie", "other"][: rng.randint(1 if rng.random() < 0.1 else 2, 4)]
    weights = [rng.random() + 0.05 for _ in labels]  # skewed label use, as real votes are
    missing = 0.0 if equal_n else rng.choice([0.0, 0.2, 0.5])
    return [
        [None if rng.random() < missing else rng.choices(labels, weights)[0] for _ in range(items)]
        for _ in range(raters)
    ]


def _units(matrix) -> list[list[str]]:
    return [[r[i] for r in matrix if r[i] is not None] for i in range(len(matrix[0]))]


def _reference(fn, *args, **kw) -> float | None:
    """The reference's value, None where it says undefined (NaN or an error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(fn(*args, **kw))
        except ValueError:
            return None
    return None if math.isnan(value) else value


def _same(ours: float | None, ref: float | None) -> None:
    if ref is None:
        assert ours is None
    else:
        assert ours is not None and ours == pytest.approx(ref, abs=TOL)


# --- references ------------------------------------------------------------------------------------


def _alpha_reference(matrix) -> float | None:
    codes = {label: k for k, label in enumerate(sorted({x for r in matrix for x in r if x is not None}))}
    data = np.array([[np.nan if x is None else codes[x] for x in r] for r in matrix], dtype=float)
    return _reference(krippendorff.alpha, reliability_data=data, level_of_measurement="nominal")


def _fleiss_statsmodels(units) -> float | None:
    table, _ = aggregate_raters(np.array(units, dtype=object))
    return _reference(fleiss_kappa, table, method="fleiss")


def _fleiss_by_pairs(units) -> float | None:
    """Fleiss' κ for any n per unit, from its definition as chance-corrected pair agreement: P_i is the
    share of ordered pairs of distinct ratings of unit i that agree, P_e the chance that two ratings
    drawn from all ratings (with replacement) agree."""
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    p_i = [sum(a == b for a, b in permutations(u, 2)) / (len(u) * (len(u) - 1)) for u in units]
    flat = [x for u in units for x in u]
    p_e = sum(flat.count(x) * flat.count(y) for x in set(flat) for y in set(flat) if x == y) / len(flat) ** 2
    return None if p_e == 1 else (sum(p_i) / len(p_i) - p_e) / (1 - p_e)


def _percent_by_pairs(units) -> float | None:
    pairs = [a == b for u in units for a, b in combinations(u, 2)]
    return sum(pairs) / len(pairs) if pairs else None


# --- random inputs ---------------------------------------------------------------------------------


def test_cohen_kappa_matches_scikit_learn():
    rng = random.Random(1)
    for _ in range(TRIALS // 2):  # scikit-learn's argument checks cost ~10 ms a call
        matrix = _random_matrix(rng, equal_n=True)
        a, b = matrix[0], matrix[1]
        _same(agreement.cohen_kappa(a, b), _reference(cohen_kappa_score, a, b))


def test_fleiss_kappa_matches_statsmodels_with_equal_raters_per_item():
    rng = random.Random(2)
    for _ in range(TRIALS):
        units = _units(_random_matrix(rng, equal_n=True))
        _same(agreement.fleiss_kappa(units), _fleiss_statsmodels(units))


def test_fleiss_kappa_with_varying_raters_matches_its_definition():
    # statsmodels needs equal n per item; with varying n the reference is the definition, written as
    # pair counts instead of label counts, and on equal-n cases that re-computation meets statsmodels.
    rng = random.Random(3)
    varying = 0
    for _ in range(TRIALS):
        units = _units(_random_matrix(rng))
        varying += len({len(u) for u in units if len(u) >= 2}) > 1
        _same(agreement.fleiss_kappa(units), _fleiss_by_pairs(units))
        equal = _units(_random_matrix(rng, equal_n=True))
        _same(_fleiss_by_pairs(equal), _fleiss_statsmodels(equal))
    assert varying > TRIALS / 3  # the varying case was really exercised


def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing_ratings():
    rng = random.Random(4)
    for _ in range(TRIALS):
        matrix = _random_matrix(rng)
        _same(agreement.krippendorff_alpha(_units(matrix)), _alpha_reference(matrix))


def test_percent_agreement_matches_a_count_of_pairs():
    rng = random.Random(5)
    for _ in range(TRIALS):
        units = _units(_random_matrix(rng))
        _same(agreement.percent_agreement(units), _percent_by_pairs(units))


def test_alpha_from_sums_is_the_same_alpha():
    rng = random.Random(6)
    for _ in range(100):
        units = [u for u in _units(_random_matrix(rng)) if len(u) >= 2]
        disagreeing = sum((len(u) ** 2 - sum(u.count(x) ** 2 for x in set(u))) / (len(u) - 1) for u in units)
        totals = {x: sum(u.count(x) for u in units) for x in {x for u in units for x in u}}
        _same(agreement.krippendorff_alpha_from_sums(disagreeing, totals), agreement.krippendorff_alpha(units))


# --- edge cases: what each statistic says when it is undefined -------------------------------------


def test_one_label_used_by_all():
    matrix = [["tie"] * 5, ["tie"] * 5, ["tie", None, "tie", "tie", None]]
    units = _units(matrix)
    assert agreement.percent_agreement(units) == 1.0  # every pair agrees: defined
    assert agreement.fleiss_kappa(units) is None and agreement.krippendorff_alpha(units) is None
    assert agreement.cohen_kappa(matrix[0], matrix[1]) is None
    assert agreement.undefined_reason(units) == agreement.ONE_LABEL
    assert agreement.undefined_reason(units, chance_corrected=False) is None
    # every reference refuses a number here too
    assert _reference(cohen_kappa_score, matrix[0], matrix[1]) is None
    assert _alpha_reference(matrix) is None
    assert _fleiss_statsmodels(_units(matrix[:2])) is None


def test_one_rater_and_no_overlap():
    one = [["first", "second", "tie"]]
    apart = [["first", None, None], [None, "second", None], [None, None, "tie"]]
    for matrix in (one, apart):
        units = _units(matrix)
        assert agreement.percent_agreement(units) is None
        assert agreement.fleiss_kappa(units) is None and agreement.krippendorff_alpha(units) is None
        assert agreement.undefined_reason(units) == agreement.NO_OVERLAP
    assert _alpha_reference(apart) is None
    assert agreement.cohen_kappa([], []) is None


DEFINED = {
    "perfect": [["first", "second", "tie"], ["first", "second", "tie"]],
    "never agree": [["first", "second"], ["second", "first"]],
    "each rater one label": [["first", "first", "first"], ["second", "second", "second"]],
    "one item split": [["first"], ["second"], ["first"]],
    "six raters": [["first", "tie"]] * 5 + [["second", "tie"]],
}


@pytest.mark.parametrize("name", DEFINED)
def test_defined_edge_cases_match_the_references(name):
    matrix = DEFINED[name]
    units = _units(matrix)
    _same(agreement.krippendorff_alpha(units), _alpha_reference(matrix))
    _same(agreement.fleiss_kappa(units), _fleiss_statsmodels(units))
    _same(agreement.cohen_kappa(matrix[0], matrix[1]), _reference(cohen_kappa_score, matrix[0], matrix[1]))
    _same(agreement.percent_agreement(units), _percent_by_pairs(units))


def test_defined_edge_values():
    assert agreement.krippendorff_alpha(_units(DEFINED["perfect"])) == 1.0
    assert agreement.fleiss_kappa(_units(DEFINED["perfect"])) == 1.0
    assert agreement.cohen_kappa(*DEFINED["each rater one label"]) == 0.0


def test_cohen_kappa_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        agreement.cohen_kappa(["a", "b"], ["a"])


# --- the curation report's α (aggregated in SQL) is the same statistic, with the same convention ----


def _report_alpha(con: duckdb.DuckDBPyConnection, units: list[list[str]]) -> float | None:
    comparisons = pa.table(  # the columns of curation's `comparisons` table that the report reads
        {
            "n_votes": [len(u) for u in units],
            "wins_a": [u.count("a") for u in units],
            "wins_b": [u.count("b") for u in units],
            "ties": [u.count("tie") for u in units],
            "agreement": [0.0] * len(units),
        }
    )
    con.register("comparisons", comparisons)
    try:
        return report.agreement(con)["krippendorff_alpha"]
    finally:
        con.unregister("comparisons")


def test_curation_report_alpha_matches_the_krippendorff_package():
    rng, con = random.Random(8), duckdb.connect()
    for _ in range(100):
        units = [
            rng.choices(["a", "b", "tie"], [0.5, 0.3, 0.2], k=rng.randint(1, 6)) for _ in range(rng.randint(1, 20))
        ]
        if rng.random() < 0.1:
            units = [["a"] * len(u) for u in units]
        width = max(len(u) for u in units)
        codes = {"a": 0, "b": 1, "tie": 2}
        matrix = [[codes[u[r]] if r < len(u) else None for u in units] for r in range(width)]
        data = np.array([[np.nan if x is None else x for x in row] for row in matrix], dtype=float)
        ref = _reference(krippendorff.alpha, reliability_data=data, level_of_measurement="nominal")
        ours = _report_alpha(con, units)
        if ref is None:
            assert ours is None  # e.g. every vote one outcome: not 1.0
        else:
            assert ours == pytest.approx(ref, abs=5e-5)  # the report rounds to 4 digits
