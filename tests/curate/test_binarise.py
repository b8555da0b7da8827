"""Binarisation: multi-response items into pairs, unpaired (KTO) labels, SFT rows, PRM step rows."""

from __future__ import annotations

import pyarrow.parquet as pq
from prefkit.curate.pipeline import curate

from tests.curate.helpers import judge, make_store, prompt, recipe, response, vote

P = prompt("Suggest a name for a cat.")
R = [response(P, t) for t in ("Whiskers", "Cat", "Sir Pounce", "Bob")]  # rated 8, 2, 9, 5 below


def rows(result, table):
    return pq.read_table(result.tables[table]).to_pylist()


def run(tmp_path, judgements, binarise, *extra, responses=R, prompts=(P,)):
    store = make_store(tmp_path / "s", list(prompts), list(responses), judgements)
    return curate(store, recipe("votes", {"binarise": binarise}, "ties", *extra, {"split": {"test_size": 0}}), "b")


def ratings():
    return [judge(P, R, [8, 2, 9, 5], "x", kind="rating"), judge(P, R, [8, 2, 9, 5], "y", kind="rating")]


def test_best_vs_worst(tmp_path):
    got = [
        (r["chosen"], r["rejected"], r["margin"])
        for r in rows(run(tmp_path, ratings(), {"pairs": "best_vs_worst"}), "pairs")
    ]
    assert got == [("Sir Pounce", "Cat", 7.0)]


def test_best_vs_random_is_seeded_and_never_pairs_the_best_with_itself(tmp_path):
    first = rows(run(tmp_path / "1", ratings(), {"pairs": "best_vs_random"}), "pairs")
    again = rows(run(tmp_path / "2", ratings(), {"pairs": "best_vs_random"}), "pairs")
    assert len(first) == 1 and first[0]["chosen"] == "Sir Pounce" and first[0]["rejected"] != "Sir Pounce"
    assert [r["rejected"] for r in first] == [r["rejected"] for r in again]


def test_all_pairs_above_a_margin(tmp_path):
    got = rows(run(tmp_path, ratings(), {"pairs": "all_pairs", "margin": 3}), "pairs")
    # differences ≥ 3: 9-2, 9-5, 8-2, 8-5, 5-2  (9-8 = 1 is too close)
    assert sorted((r["chosen"], r["rejected"]) for r in got) == sorted(
        [("Sir Pounce", "Cat"), ("Sir Pounce", "Bob"), ("Whiskers", "Cat"), ("Whiskers", "Bob"), ("Bob", "Cat")]
    )
    assert all(r["n_votes"] == 2 and r["agreement"] == 1.0 for r in got)


def test_single_response_ratings_pair_up_by_mean_rating(tmp_path):
    js = [
        judge(P, [R[0]], [7], "x", kind="rating"),
        judge(P, [R[0]], [9], "y", kind="rating"),
        judge(P, [R[1]], [3], "x", kind="rating"),
    ]
    got = rows(run(tmp_path, js, {"pairs": "best_vs_worst"}, responses=R[:2]), "pairs")
    assert [(r["chosen"], r["rejected"], r["score_chosen"], r["score_rejected"]) for r in got] == [
        ("Whiskers", "Cat", 8.0, 3.0)
    ]
    assert got[0]["agreement"] is None and got[0]["n_votes"] == 3


def test_unpaired_labels_from_pairs_binary_and_both_bad_with_balance_reported(tmp_path):
    q = prompt("Another prompt.")
    x, y = response(q, "fine"), response(q, "awful")
    js = [
        vote(P, R[0], R[1], "a"),  # Whiskers ≻ Cat
        judge(P, [R[3]], [1], "x", kind="binary"),
        judge(P, [R[3]], [0], "y", kind="binary"),  # 1:1, no label
        judge(P, [R[2]], [1], "x", kind="binary"),
        judge(P, [R[2]], [1], "y", kind="binary"),
        vote(q, x, y, "a", both_bad=True),
    ]
    res = run(tmp_path, js, {"pairs": "comparisons"}, responses=[*R, x, y], prompts=(P, q))
    got = sorted((u["completion"], u["label"], u["derived_from"]) for u in rows(res, "unpaired"))
    assert got == [
        ("Cat", False, "pair_rejected"),
        ("Sir Pounce", True, "binary"),
        ("Whiskers", True, "pair_chosen"),
        ("awful", False, "both_bad"),
        ("fine", False, "both_bad"),
    ]
    assert res.report["unpaired_balance"] == {"desirable": 2, "undesirable": 3, "desirable_share": 0.4}
    assert res.report["drops"]["unpaired"]["binary_tie"]["count"] == 1


def test_rating_threshold_and_balance_cap(tmp_path):
    js = [judge(P, [r], [s], "x", kind="rating") for r, s in zip(R, [8, 2, 9, 5], strict=True)]
    cfg = {"pairs": "comparisons", "unpaired": {"rating_threshold": 6, "max_ratio": 1.0, "from_pairs": False}}
    res = run(tmp_path, js, cfg)
    labels = sorted((u["completion"], u["label"]) for u in rows(res, "unpaired"))
    assert labels == [("Bob", False), ("Cat", False), ("Sir Pounce", True), ("Whiskers", True)]
    cfg["unpaired"]["rating_threshold"] = 4  # three desirable, one undesirable: cap at 1:1 drops two
    res = run(tmp_path / "cap", js, cfg)
    labels = [u["label"] for u in rows(res, "unpaired")]
    assert sorted(labels) == [False, True]
    assert res.report["drops"]["unpaired"]["balance_cap"]["count"] == 2


def test_sft_rows_from_accepted_revisions_only(tmp_path):
    draft = response(P, "cat")
    edit = response(P, "Captain Whiskers", origin="human_edit", parent=draft, model="human:alice")
    clair = response(P, "Mr Cat", origin="clair_revision", parent=draft)
    rejected = response(P, "Kitty", origin="critique_revision", parent=draft)
    js = [
        judge(P, [draft, edit], [0, 1], "alice", kind="revision"),
        judge(P, [draft, clair], [0, 1], "ai:m:clair", kind="revision", annotator_type="ai"),
        judge(P, [draft, rejected], [1, 0], "bob", kind="revision"),
    ]  # the revision was not accepted
    res = run(tmp_path, js, {}, responses=[draft, edit, clair, rejected])
    sft = rows(res, "sft")
    assert sorted(r["messages"][-1]["content"] for r in sft) == ["Captain Whiskers", "Mr Cat"]
    assert all(r["parent_id"] == draft.response_id and r["messages"][-1]["role"] == "assistant" for r in sft)
    assert sft[0]["messages"][0] == {"role": "user", "content": "Suggest a name for a cat."}
    # Revisions are also preferences: revised ≻ original.
    assert sorted(p["chosen"] for p in rows(res, "pairs")) == ["Captain Whiskers", "Mr Cat", "cat"]


def test_step_labels_are_kept_for_prm_data(tmp_path):
    solution = response(P, "Step one. Step two.")
    good = judge(
        P, [solution], [1], "alice", kind="steps", step_labels=[1, -1], metadata={"steps": ["Step one.", "Step two."]}
    )
    broken = response(P, "Only one step.")
    bad = judge(P, [broken], [1], "alice", kind="steps", step_labels=[1, 1], metadata={"steps": ["Only one step."]})
    untexted = response(P, "No step texts given.")
    missing = judge(P, [untexted], [1], "alice", kind="steps", step_labels=[1])
    res = run(tmp_path, [good, bad, missing], {}, responses=[solution, broken, untexted])
    steps = rows(res, "steps")
    assert [(r["completions"], r["labels"]) for r in steps] == [(["Step one.", "Step two."], [1, -1])]
    assert res.report["drops"]["steps"]["step_count_mismatch"]["count"] == 2


def test_curated_rows_carry_the_stores_response_ids_through_a_merged_prompt(tmp_path):
    """Export and score-pairs read these ids; a response stored under a prompt merged onto an equal one
    keeps its own id (not the hash of the kept prompt and its text)."""
    dup = prompt("suggest a name for a CAT.", minute=1)  # equal to P after normalisation: merged onto P
    a, b = response(dup, "Tom"), response(dup, "Felix")
    draft = response(dup, "cat")
    edit = response(dup, "Sir Cat", origin="human_edit", model="human:alice", parent=draft)
    solution = response(dup, "One. Two.")
    js = [
        vote(dup, a, b, "b"),
        judge(dup, [a], [1], "x", kind="binary"),
        judge(dup, [draft, edit], [0, 1], "alice", kind="revision"),
        judge(dup, [solution], [1], "alice", kind="steps", step_labels=[1, 0], metadata={"steps": ["One.", "Two."]}),
    ]
    store = make_store(tmp_path / "s", [P, dup], [a, b, draft, edit, solution], js)
    steps = recipe("dedupe", "votes", {"binarise": {"pairs": "comparisons"}}, {"split": {"test_size": 0}})
    res = curate(store, steps, "b")
    assert res.report["dedupe"]["exact_duplicate_prompts"] == 1
    content = {r.response_id: r.content for r in (a, b, draft, edit, solution)}
    pairs = rows(res, "pairs")
    assert sorted((p["chosen_id"], p["rejected_id"]) for p in pairs) == sorted(
        [(b.response_id, a.response_id), (edit.response_id, draft.response_id)]
    )
    assert all((content[p["chosen_id"]], content[p["rejected_id"]]) == (p["chosen"], p["rejected"]) for p in pairs)
    unpaired = rows(res, "unpaired")
    assert {u["response_id"] for u in unpaired} == {a.response_id, b.response_id, draft.response_id, edit.response_id}
    assert all(content[u["response_id"]] == u["completion"] for u in unpaired)
    (sft,) = rows(res, "sft")
    assert (sft["response_id"], sft["parent_id"]) == (edit.response_id, draft.response_id)
    (step,) = rows(res, "steps")
    assert step["response_id"] == solution.response_id
    assert {r["prompt_id"] for t in ("pairs", "unpaired", "sft", "steps") for r in rows(res, t)} == {P.prompt_id}
