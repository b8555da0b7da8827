"""The recipe as a plan of steps, filters as classes with stable reason codes, the declared working tables."""

from __future__ import annotations

import os
from dataclasses import dataclass

import duckdb
import pyarrow.parquet as pq
import pytest
from prefkit.curate import filters, plan, working
from prefkit.curate.pipeline import curate, run_steps
from prefkit.curate.recipe import RecipeError, load_recipe, parse_recipe

from tests.curate.helpers import judge, make_store, prompt, recipe, response, vote

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "data/recipes/example.yaml")


def margins_store(tmp_path, name="s"):
    """Three pairs with margins 1, 1/3 and 1/5 (3:0, 2:1 and 3:2 votes)."""
    ps, rs, js = [], [], []
    for i, (up, down) in enumerate([(3, 0), (2, 1), (3, 2)]):
        p = prompt(f"p{i}", minute=i)
        a, b = response(p, "x"), response(p, "y")
        ps.append(p)
        rs += [a, b]
        js += [vote(p, a, b, "a", f"u{k}") for k in range(up)] + [vote(p, a, b, "b", f"v{k}") for k in range(down)]
    return make_store(tmp_path / name, ps, rs, js)


def test_a_drop_reason_key_stays_when_its_threshold_changes(tmp_path):
    store = margins_store(tmp_path)
    low = curate(store, recipe("votes", "binarise", {"min_margin": 0.3}), "low").report
    high = curate(store, recipe("votes", "binarise", {"min_margin": 0.5}), "high").report
    assert set(low["drops"]["pairs"]) == set(high["drops"]["pairs"]) == {"min_margin"}
    assert low["drops"]["pairs"]["min_margin"]["count"] == 1 and low["drops"]["pairs"]["min_margin"]["threshold"] == 0.3
    assert (
        high["drops"]["pairs"]["min_margin"]["count"] == 2 and high["drops"]["pairs"]["min_margin"]["threshold"] == 0.5
    )
    row = next(s for s in high["steps"] if s["step"] == "min_margin")
    assert (row["reason"], row["threshold"], row["dropped"]) == ("min_margin", 0.5, 2)
    page = (store.root / "curated" / "high" / "report.html").read_text(encoding="utf-8")
    assert "min_margin — 2" in page and "(threshold: 0.5)" in page


def test_a_filter_listed_twice_adds_its_counts_under_one_key(tmp_path):
    store = margins_store(tmp_path)
    rep = curate(store, recipe("votes", "binarise", {"min_margin": 0.25}, {"min_margin": 0.5}), "twice").report
    entry = rep["drops"]["pairs"]["min_margin"]
    assert entry["count"] == 2 and entry["threshold"] == [0.25, 0.5]  # 1/5 goes first, then 1/3
    assert [s["dropped"] for s in rep["steps"] if s["step"] == "min_margin"] == [1, 1]
    assert len(entry["examples"]) == 2


def test_the_example_recipe_on_an_empty_store_writes_empty_tables(tmp_path):
    # Its length-bias and balance caps count rows with count_if, which is NULL over no rows.
    res = curate(make_store(tmp_path / "empty"), EXAMPLE, "nothing")
    assert res.rows == {"pairs": 0, "unpaired": 0, "sft": 0, "steps": 0}
    assert pq.read_table(res.tables["unpaired"]).num_rows == 0


def test_the_plan_follows_the_recipe(tmp_path):
    r = recipe(
        {"dedupe": {"near_duplicates": {"action": "drop"}}},
        "votes",
        "binarise",
        {"min_margin": 0.2},
        "empty",
        "ties",
        "split",
    )
    got = [repr(s) for s in plan.plan(r)]
    assert got[:5] == [
        "Load('load')",
        "DedupeStep('dedupe')",
        "Texts('texts')",
        "VotesStep('votes')",
        "BinariseTable('binarise pairs')",
    ]
    pairs = [g for g in got if g.startswith("Mark(") and g.endswith("'pairs')")]
    assert pairs == [
        "Mark('dedupe (near duplicates)', 'pairs')",
        "Mark('dedupe (pairs)', 'pairs')",
        "Mark('votes (both bad)', 'pairs')",
        "Mark('min_margin', 'pairs')",  # the recipe's filters, in its order
        "Mark('empty', 'pairs')",
        "Mark('ties', 'pairs')",
    ]
    after_unpaired = got[
        got.index("BinariseTable('binarise unpaired')") + 1 : got.index("BinariseTable('binarise sft')")
    ]
    assert after_unpaired == [
        "Mark('binarise (binary tie)', 'unpaired')",
        "Mark('dedupe (near duplicates)', 'unpaired')",
        "Mark('empty', 'unpaired')",  # min_margin and ties apply to pairs only
    ]
    assert got[-3:] == ["Mark('binarise (balance)', 'unpaired')", "SplitStep('split')", "Summary('report')"]


RECIPES = [
    EXAMPLE,
    os.path.join(ROOT, "data/recipes/default.yaml"),
    os.path.join(ROOT, "data/recipes/self-rewarding.yaml"),
]


@pytest.mark.parametrize("path", RECIPES)
def test_every_step_reads_only_tables_an_earlier_step_wrote(path):
    steps = plan.plan(load_recipe(path))
    names = {s.name for s in steps} | {"write"}
    written: set[str] = set()
    for step in steps:
        assert set(step.reads) <= written, (step, set(step.reads) - written)
        written |= set(step.writes)
    assert written == set(working.WORKING)
    for table in working.WORKING.values():
        assert table.writer in names and set(table.readers) <= names, table


def variants():
    """Recipes that between them make every working table."""
    base = load_recipe(EXAMPLE).to_dict()
    bt = parse_recipe(
        {
            **base,
            "steps": [
                {"dedupe": {"near_duplicates": {"action": "drop"}}},
                {"votes": {"method": "bradley_terry"}},
                {"binarise": {"pairs": "best_vs_worst", "unpaired": {"rating_threshold": 5}}},
                "split",
            ],
        }
    )
    return [load_recipe(EXAMPLE), bt]


def rich_store(tmp_path):
    """Prompts, ratings, binary labels, an adjudication, a revision and step labels: every kind of row."""
    p, q = prompt("Name a cat."), prompt("Name a dog.", minute=1)
    a, b, c = response(p, "Tom"), response(p, "Felix"), response(p, "Cat")
    edit = response(p, "Sir Tom", origin="human_edit", parent=a, model="human:alice")
    d, e = response(q, "Rex"), response(q, "Fido")
    js = [
        vote(p, a, b, "a", "alice"),
        vote(p, a, b, "b", "bob"),
        vote(q, d, e, "a", "alice"),
        judge(p, [a, b, c], [7, 3, 5], "carol", kind="rating"),
        judge(p, [a], [1], "dave", kind="binary"),
        judge(p, [a, edit], [0, 1], "alice", kind="revision"),
        judge(q, [d], [1], "alice", kind="steps", step_labels=[1, 0], metadata={"steps": ["One.", "Two."]}),
        judge(q, [d, e], [0, 1], "ref", annotator_type="adjudicator"),
    ]
    return make_store(tmp_path / "rich", [p, q], [a, b, c, edit, d, e], js)


def test_the_working_tables_are_exactly_the_declared_ones(tmp_path):
    store = rich_store(tmp_path)
    made: set[str] = set()
    for r in variants():
        con = store.connect()
        try:
            rep = run_steps(con, r)
            made |= set(working.snapshot(con))
        finally:
            con.close()
        assert rep["steps"] and not rep["warnings"]
    assert made == set(working.WORKING)


def test_a_step_that_writes_an_undeclared_table_fails():
    con = duckdb.connect()
    before = working.snapshot(con)
    con.execute("CREATE TEMP TABLE split_of AS SELECT 1 AS x")
    con.execute("CREATE TEMP TABLE leftover AS SELECT 1 AS x")
    with pytest.raises(RuntimeError, match=r"'split' wrote the working table\(s\) \['leftover'\]"):
        working.check_writes("split", working.written_by("split"), before, working.snapshot(con))
    # Replacing another step's table counts as writing it.
    before = working.snapshot(con)
    con.execute("CREATE OR REPLACE TEMP TABLE split_of AS SELECT 2 AS x")
    with pytest.raises(RuntimeError, match=r"\['split_of'\]"):
        working.check_writes("report", working.written_by("report"), before, working.snapshot(con))


def test_every_filter_is_one_class_with_a_unique_stable_code():
    assert set(filters.FILTERS) == {
        "identical",
        "empty",
        "ties",
        "min_margin",
        "min_agreement",
        "length",
        "length_bias",
        "source_cap",
        "decontaminate",
    }
    for name, cls in filters.FILTERS.items():
        assert cls.code == name and cls.listed  # a listed filter's key in the report is its recipe name
    built_in = {c.code for c in filters.REASONS.values() if not c.listed}
    assert built_in == {
        "near_duplicate",
        "duplicate_pair",
        "both_bad",
        "binary_tie",
        "step_count_mismatch",
        "balance_cap",
    }
    for cls in filters.REASONS.values():
        assert cls.meaning and set(cls.applies) <= set(working.ROWS), cls
    with pytest.raises(TypeError, match="share the reason code 'ties'"):
        type("AnotherTies", (filters.Filter,), {"name": "ties2", "code": "ties", "applies": ("pairs",), "meaning": "x"})


def test_a_new_filter_is_one_class(tmp_path):
    """Defining the class is all it takes: the recipe reads its options and checks, the plan runs it,
    the report counts it under its code with its threshold."""

    class MaxVotes(filters.Filter):
        name = code = "max_votes"
        applies = ("pairs",)
        meaning = "more votes than the threshold"
        scalar = "value"

        @dataclass
        class Options:
            value: int = 10

            def problems(self) -> list[str]:
                return ["value must be 1 or more"] if self.value < 1 else []

        def threshold(self):
            return self.options.value

        def mark(self, con, table, ctx):
            return filters.mark_where(con, table, self.code, "n_votes > ?", [self.options.value])

    try:
        with pytest.raises(RecipeError, match=r"steps\[0\] \(max_votes\): value must be 1 or more"):
            parse_recipe({"steps": [{"max_votes": 0}]})
        rep = curate(margins_store(tmp_path), recipe("votes", "binarise", {"max_votes": 4}), "new").report
        assert rep["drops"]["pairs"]["max_votes"]["count"] == 1  # the 3:2 pair has five votes
        assert rep["drops"]["pairs"]["max_votes"]["threshold"] == 4
    finally:
        del filters.FILTERS["max_votes"], filters.REASONS["max_votes"]


def test_the_command_prints_each_code_with_its_threshold(tmp_path, capsys):
    from prefkit.cli import main

    store = margins_store(tmp_path)
    path = tmp_path / "r.yaml"
    path.write_text("steps: [votes, binarise, {min_margin: 0.3}, ties]", encoding="utf-8")
    assert main(["curate", "--store", str(store.root), "--recipe", str(path), "--out", "c"]) == 0
    out = capsys.readouterr().out
    assert "dropped from pairs: 1 (min_margin, threshold 0.3)" in out
