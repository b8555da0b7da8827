"""Splits by prompt group, the recipe file (errors, saved beside the output), atomic output, the report page."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from prefkit.curate.pipeline import CurateError, curate
from prefkit.curate.recipe import RecipeError, load_recipe

from prefkit.cli import main
from tests.curate.helpers import make_store, prompt, recipe, response, vote

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def store_with(tmp_path, n_a=40, n_b=10, name="s"):
    ps, rs, js = [], [], []
    for i in range(n_a + n_b):
        source = "alpha" if i < n_a else "beta"
        p = prompt(f"question {i} from {source}: how many legs does animal number {i} have", source=source, minute=i)
        a, b = response(p, "four"), response(p, "seven")
        ps.append(p)
        rs += [a, b]
        js.append(vote(p, a, b, "a"))
    return make_store(tmp_path / name, ps, rs, js)


def splits_by_source(result):
    rows = pq.read_table(result.tables["pairs"]).to_pylist()
    c = Counter((r["source"], r["split"]) for r in rows)
    return c


def test_split_is_stratified_by_source_and_deterministic(tmp_path):
    store = store_with(tmp_path)
    r = recipe("votes", "binarise", {"split": {"test_size": 0.2}})
    first = curate(store, r, "one")
    c = splits_by_source(first)
    assert c == {("alpha", "test"): 8, ("alpha", "train"): 32, ("beta", "test"): 2, ("beta", "train"): 8}
    again = curate(store, r, "two")
    assert pq.read_table(again.tables["pairs"]).equals(pq.read_table(first.tables["pairs"]))
    other_seed = curate(store, recipe("votes", "binarise", {"split": {"test_size": 0.2}}, seed=5), "three")
    a = {r["prompt_id"] for r in pq.read_table(first.tables["pairs"]).to_pylist() if r["split"] == "test"}
    b = {r["prompt_id"] for r in pq.read_table(other_seed.tables["pairs"]).to_pylist() if r["split"] == "test"}
    assert a != b and len(a) == len(b) == 10


def test_split_without_strata_and_by_count(tmp_path):
    store = store_with(tmp_path)
    res = curate(store, recipe("votes", "binarise", {"split": {"test_size": 5, "stratify": "none"}}), "n")
    assert res.report["split_groups"] == {"test": 5, "train": 45}


def test_near_duplicate_groups_share_a_split(tmp_path):
    topics = [
        "a forgetful wizard and his enchanted hat",
        "the tides of the northern sea in winter",
        "baking sourdough bread with a stiff starter",
        "the migration of arctic terns each year",
        "repairing an old bicycle with rusty gears",
        "counting stars from a mountain observatory",
    ]
    ps, rs, js = [], [], []
    for i in range(12):
        # Six families of two near-identical prompts each (one word changed).
        text = f"please write a long limerick about {topics[i // 2]} for my {'sister' if i % 2 else 'brother'} today"
        p = prompt(text, minute=i)
        a, b = response(p, "good"), response(p, "bad")
        ps.append(p)
        rs += [a, b]
        js.append(vote(p, a, b, "a"))
    store = make_store(tmp_path / "s", ps, rs, js)
    res = curate(
        store,
        recipe({"dedupe": {"near_duplicates": {"threshold": 0.6}}}, "votes", "binarise", {"split": {"test_size": 0.5}}),
        "g",
    )
    rows = pq.read_table(res.tables["pairs"]).to_pylist()
    groups = defaultdict(set)
    for r in rows:
        groups[r["group_id"]].add(r["split"])
    assert len(groups) == 6 and all(len(s) == 1 for s in groups.values())
    assert {s for v in groups.values() for s in v} == {"train", "test"}
    # With action: drop only the first prompt of each group is kept, and the drop is counted.
    res = curate(
        store, recipe({"dedupe": {"near_duplicates": {"threshold": 0.6, "action": "drop"}}}, "votes", "binarise"), "d"
    )
    assert res.rows["pairs"] == 6 and res.report["drops"]["pairs"]["near_duplicate"]["count"] == 6


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: [shuffle]", "unknown step 'shuffle'"),
        ("steps: [{votes: {method: vibes}}]", "method is 'vibes'; choose one of"),
        ("steps: [{votes: {methd: majority}}]", "unknown option 'methd'"),
        ("steps: [{split: {test_size: lots}}]", "test_size must be a number"),
        ("steps: [split, votes]", "'votes' comes too late"),
        ("steps: [votes, votes]", "'votes' is listed twice"),
        ("steps:\n  - votes: [1\n", "not valid YAML"),
        ("stepz: []", "unknown key 'stepz'"),
        ("steps: [{dedupe: {near_duplicates: {num_perm: 100, bands: 32}}}]", "must be a positive multiple of bands"),
        ("steps: [{length_bias: 1.5}]", "max_share must be in (0, 1]"),
        ("steps: [{min_agreement: 1.7}]", "(min_agreement): value (1.7) must be between 0 and 1"),
        ("steps: [{min_agreement: -0.1}]", "(min_agreement): value (-0.1) must be between 0 and 1"),
        ("steps: [{min_margin: -1}]", "(min_margin): value (-1.0) must be 0 or more"),
        ("steps: [{length: {min_response: 500, max_response: 100}}]", "min_response (500) is above max_response (100)"),
        ("steps: [{length: {min_prompt: 9, max_prompt: 3}}]", "min_prompt (9) is above max_prompt (3)"),
        ("steps: [{length: {max_prompt: -3}}]", "max_prompt (-3) must be 0 or more"),
        ("steps: [{source_cap: {caps: {web: -2}}}]", "caps.web (-2) must be 0 or more"),
        ("steps: [{binarise: {pairs: all_pairs, margin: -0.5}}]", "margin (-0.5) must be 0 or more"),
    ],
)
def test_recipe_errors_name_the_file_step_and_option(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_the_packaged_default_recipe_is_the_one_in_data():
    with open(os.path.join(ROOT, "data/recipes/default.yaml"), encoding="utf-8") as fh:
        assert fh.read() == (Path(ROOT) / "curate/default.yaml").read_text(encoding="utf-8")


def test_bundled_recipes_load_and_the_saved_recipe_reproduces_the_run(tmp_path):
    default = load_recipe()
    example = load_recipe(os.path.join(ROOT, "data/recipes/example.yaml"))
    assert [s.name for s in default.steps][:3] == ["dedupe", "votes", "binarise"]
    assert {"decontaminate", "source_cap", "min_margin"} <= {s.name for s in example.steps}
    store = store_with(tmp_path)
    res = curate(store, default, "x")
    saved = load_recipe(res.recipe_yaml)
    assert saved.to_dict() == default.to_dict()
    assert yaml.safe_load(res.recipe_yaml.read_text())["name"] == "default"


def test_a_failed_run_leaves_the_previous_curation_untouched(tmp_path):
    store = store_with(tmp_path)
    good = curate(store, recipe("votes", "binarise"), "keep")
    before = pq.read_table(good.tables["pairs"])
    bad = recipe("votes", "binarise", {"decontaminate": {"eval_sets": [str(tmp_path / "missing.txt")]}})
    with pytest.raises(Exception, match="does not exist"):
        curate(store, bad, "keep")
    assert pq.read_table(good.tables["pairs"]).equals(before)
    assert sorted(p.name for p in (store.root / "curated").iterdir()) == ["keep"]  # no temporary left behind


def test_bad_names_and_cli_errors_are_one_line(tmp_path, capsys):
    store = store_with(tmp_path)
    for bad in ("../escape", "a/../../b", ".hidden", "name\n", ""):
        with pytest.raises(CurateError, match="use letters, digits"):
            curate(store, recipe("votes"), bad or "-")
    (tmp_path / "r.yaml").write_text("steps: [nope]", encoding="utf-8")
    assert main(["curate", "--store", str(store.root), "--recipe", str(tmp_path / "r.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown step 'nope'" in err


def test_an_out_dir_that_is_a_file_is_a_one_line_error_before_any_work(tmp_path, capsys):
    store = store_with(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    for out_dir in (blocker, blocker / "below"):
        assert main(["curate", "--store", str(store.root), "--out", "x", "--out-dir", str(out_dir)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{blocker} is a file" in err and "Traceback" not in err
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_a_truncated_eval_set_parquet_is_named(tmp_path, capsys):
    store = store_with(tmp_path)
    bad = tmp_path / "eval.parquet"
    bad.write_bytes(b"PAR1\x15\x04")  # the first bytes of a Parquet file, cut off
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"steps": ["votes", "binarise", {"decontaminate": {"eval_sets": [str(bad)]}}]}))
    assert main(["curate", "--store", str(store.root), "--recipe", str(path), "--out", "d"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"eval set {bad}: cannot read it" in err
    assert not (store.root / "curated" / "d").exists()


def test_report_html_is_self_contained_and_renders_model_text_inert(tmp_path):
    p = prompt("<script>alert(1)</script> which?")
    a, b = response(p, "<img src=x onerror=alert(1)>"), response(p, "plain")
    store = make_store(tmp_path / "s", [p], [a, b], [vote(p, a, b, "tie", "<b>mallory</b>")])
    res = curate(store, recipe("votes", "binarise", "ties"), "x")
    page = res.report_html.read_text()
    assert "<script>" not in page and "<img" not in page and "<b>mallory" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert "<svg" in page and 'src="http' not in page and "<link" not in page
    assert res.report["drops"]["pairs"]["ties"]["examples"][0]["chosen"].startswith("<img")


def test_output_can_go_outside_the_store(tmp_path):
    store = store_with(tmp_path, n_a=4, n_b=0)
    res = curate(store, recipe("votes", "binarise"), "elsewhere", out_root=tmp_path / "out")
    assert res.folder == tmp_path / "out" / "curated" / "elsewhere" and res.tables["pairs"].exists()
    assert not (store.root / "curated").exists()


def test_the_commands_in_the_guide_run(tmp_path, capsys):
    """docs/curating.md's two commands: the default recipe, and the example recipe with every option."""
    store = store_with(tmp_path, n_a=30, n_b=5)
    assert main(["curate", "--store", str(store.root), "--out", "pandalm"]) == 0
    example = os.path.join(ROOT, "data/recipes/example.yaml")
    assert main(["curate", "--recipe", example, "--out", "strict", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "curated strict" in out and (store.root / "curated/strict/report.html").exists()
    saved = yaml.safe_load((store.root / "curated/strict/recipe.yaml").read_text())
    assert saved["seed"] == 13 and saved["name"] == "strict"


def test_an_empty_store_curates_to_empty_tables(tmp_path):
    store = make_store(tmp_path / "empty")
    res = curate(store, None, "nothing")
    assert res.rows == {"pairs": 0, "unpaired": 0, "sft": 0, "steps": 0}
    assert pq.read_table(res.tables["pairs"]).num_rows == 0 and res.report_html.exists()
