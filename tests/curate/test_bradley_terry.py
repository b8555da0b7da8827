"""Curation's Bradley–Terry margins and report: the fit itself is held to scipy in
tests/annotate/test_bradley_terry.py; here, that curation's margins are that fit and a fit that has not
converged is a warning."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from prefkit.annotate import bradley_terry
from prefkit.curate.pipeline import curate

from tests.annotate.test_bradley_terry import reference
from tests.curate.helpers import make_store, prompt, recipe, response, vote

P = prompt("Name a prime number.")
A, B, C = response(P, "7"), response(P, "9"), response(P, "15")


def unbeaten_store(path):
    """A beats B in all 100 votes (100 people), B beats C 10 times: the issue's shape."""
    js = [vote(P, A, B, "a", f"person{k}") for k in range(100)]
    js += [vote(P, B, C, "a", f"other{k}") for k in range(10)]
    return make_store(path, [P], [A, B, C], js)


def bt_recipe():
    return recipe({"votes": {"method": "bradley_terry"}}, "binarise", {"split": {"test_size": 0}})


def test_curation_margins_are_the_converged_fit_when_one_response_always_wins(tmp_path):
    res = curate(unbeaten_store(tmp_path / "s"), bt_recipe(), "bt")
    rows = {(r["chosen"], r["rejected"]): r for r in pq.read_table(res.tables["pairs"]).to_pylist()}
    ref = reference(3, [(0, 1, 1.0)] * 100 + [(1, 2, 1.0)] * 10)  # 0 = A, 1 = B, 2 = C
    assert rows[("7", "9")]["margin"] == pytest.approx(ref[0] - ref[1], abs=1e-6)
    assert rows[("9", "15")]["margin"] == pytest.approx(ref[1] - ref[2], abs=1e-6)
    assert rows[("7", "9")]["score_chosen"] == pytest.approx(ref[0], abs=1e-6)
    assert rows[("9", "15")]["score_rejected"] == pytest.approx(ref[2], abs=1e-6)
    fit = res.report["votes"]["bradley_terry"]
    assert fit["converged"] is True and fit["tournaments"] == 1 and res.report["warnings"] == []


def test_a_fit_that_does_not_converge_is_a_warning_in_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(bradley_terry, "MAX_ITERATIONS", 1)
    res = curate(unbeaten_store(tmp_path / "s"), bt_recipe(), "bt")
    fit = res.report["votes"]["bradley_terry"]
    assert fit["converged"] is False and fit["tournaments_not_converged"] == 1
    (warning,) = res.report["warnings"]
    assert "did not converge for 1 of 1" in warning
    assert "did not converge" in res.report_html.read_text(encoding="utf-8")
