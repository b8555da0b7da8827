"""Exact and near-duplicate detection: hand-made cases, and 100k prompts with planted duplicates."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefkit.curate.minhash import components, exact_groups, near_duplicate_groups
from prefkit.curate.pipeline import curate
from prefkit.curate.recipe import NearDuplicates
from prefkit.curate.synthetic import pair_scores, planted_prompts

from tests.curate.helpers import make_store, prompt, recipe, response, vote


def test_exact_groups_ignore_case_whitespace_and_unicode_form():
    texts = ["Café  au lait?", "café au lait?", "Cafe\u0301 au\tlait?", "ＣＡＦÉ au lait?", "Café au lait!"]
    # NFKC turns e + combining accent into é and full-width letters into ASCII; "!" is not "?".
    assert exact_groups(texts).tolist() == [0, 0, 0, 0, 4]


def test_near_duplicates_with_a_changed_word_group_together_and_others_stay_apart():
    base = "please write a short poem about the quiet harbour at dawn with gulls and fishing boats in the mist"
    texts = [
        base,
        base.replace("short", "brief").upper(),  # one word changed, and the case
        base.replace(" ", ", ", 3) + "!!",  # punctuation only
        "explain how a steam engine converts heat into mechanical work step by step for a child",
        "",
        "",
    ]
    g = near_duplicate_groups(texts, NearDuplicates(threshold=0.7))
    assert g.group.tolist() == [0, 0, 0, 3, 4, 4]  # empty texts are exact copies of each other, nothing more


def test_components_join_chains():
    edges = np.array([[0, 1], [1, 2], [5, 4], [4, 3], [7, 8]])
    assert components(9, edges).tolist() == [0, 0, 0, 3, 3, 3, 6, 7, 7]


@pytest.mark.slow
def test_planted_duplicates_in_100k_prompts_found_with_high_recall_and_precision():
    texts, truth = planted_prompts(100_000, seed=7)
    started = time.perf_counter()
    groups = near_duplicate_groups(texts, NearDuplicates())  # the default options of the recipe
    seconds = time.perf_counter() - started
    recall, precision = pair_scores(groups.group, truth)
    print(f"100k prompts: recall {recall:.4f} precision {precision:.4f} in {seconds:.1f} s")
    assert recall >= 0.95 and precision >= 0.95
    assert groups.near_duplicates > 20_000 and groups.exact_duplicates > 0


def test_curate_merges_exact_duplicate_prompts_and_responses_and_keeps_near_groups_in_one_split(tmp_path):
    words = "tell me a story about a brave little lighthouse keeper who saves a ship during a winter storm"
    ps = [prompt(words, minute=0), prompt(words.upper() + "  ", minute=1)]
    ps += [prompt(words.replace("brave", "clever"), minute=2)]
    ps += [
        prompt(f"unrelated question number {i} about the history of tea in {i} countries", minute=3 + i)
        for i in range(30)
    ]
    js, rs = [], []
    for i, p in enumerate(ps):
        a, b = response(p, "A good answer."), response(p, "A bad answer.")
        rs += [a, b]
        js.append(vote(p, a, b, "a", annotator=f"person{i}"))
    # The copy's responses differ only in case and whitespace from the first prompt's.
    store = make_store(tmp_path / "s", ps, rs, js)
    res = curate(store, recipe("dedupe", "votes", "binarise", {"split": {"test_size": 0.5}}), "d")
    d = res.report["dedupe"]
    assert d["exact_duplicate_prompts"] == 1 and d["duplicate_responses"] == 2 and d["near_duplicate_prompts"] == 1
    shown = {e["prompt"] for e in d["near_duplicate_examples"]}
    assert "user: " + words in shown and "user: " + words.replace("brave", "clever") in shown
    pairs = pq.read_table(res.tables["pairs"]).to_pylist()
    assert len(pairs) == 32  # the exact copy's vote joined the first prompt's comparison
    merged = next(r for r in pairs if r["prompt_id"] == ps[0].prompt_id)
    assert merged["n_votes"] == 2
    near = next(r for r in pairs if r["prompt_id"] == ps[2].prompt_id)
    assert near["group_id"] == ps[0].prompt_id and near["split"] == merged["split"]


def test_duplicate_pairs_by_normalised_text_when_prompts_and_responses_are_not_merged(tmp_path):
    p1, p2 = prompt("Is the sky blue?", minute=0), prompt("is the  sky BLUE?", minute=1)
    a1, b1, a2, b2 = response(p1, "Yes."), response(p1, "No."), response(p2, "yes."), response(p2, "No.")
    js = [vote(p1, a1, b1, "a"), vote(p2, a2, b2, "a")]
    store = make_store(tmp_path / "s", [p1, p2], [a1, b1, a2, b2], js)
    off = {"dedupe": {"prompts": False, "responses": False, "near_duplicates": False}}
    res = curate(store, recipe(off, "votes", "binarise"), "p")
    assert res.rows["pairs"] == 1 and res.report["drops"]["pairs"]["duplicate_pair"]["count"] == 1
    res = curate(store, recipe({"dedupe": {**off["dedupe"], "pairs": False}}, "votes", "binarise"), "q")
    assert res.rows["pairs"] == 2


def test_char_shingles_catch_a_misspelt_word():
    texts = [
        "the committee will reconvene on thursday afternoon",
        "the comittee will reconvene on thursday afternoon",  # one letter dropped
        "a completely different sentence about gardening tools",
    ]
    words_only = near_duplicate_groups(texts, NearDuplicates(ngram=2, threshold=0.7)).group.tolist()
    chars = near_duplicate_groups(texts, NearDuplicates(shingle="char", ngram=5, threshold=0.7)).group.tolist()
    assert words_only == [0, 1, 2]  # 2 of 6 word bigrams changed: Jaccard 0.5
    assert chars == [0, 0, 2]
