"""Vote aggregation and its policies, each on a small hand-made case with the answer written down."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from prefkit.curate.pipeline import curate

from tests.curate.helpers import judge, make_store, prompt, recipe, response, vote

P = prompt("Which is the capital of France?")
A, B, C = response(P, "Paris"), response(P, "Lyon"), response(P, "Marseille")


def run(tmp_path, judgements, *steps, responses=(A, B, C)):
    store = make_store(tmp_path / "s", [P], list(responses), judgements)
    steps = steps or ("votes",)
    return curate(store, recipe(*steps, "binarise", "ties", {"split": {"test_size": 0}}), "v")


def pairs(result):
    rows = pq.read_table(result.tables["pairs"]).to_pylist()
    return {(r["chosen"], r["rejected"]): r for r in rows}


def test_majority_is_the_plurality_of_a_b_and_tie(tmp_path):
    js = [
        vote(P, A, B, "a", "x"),
        vote(P, B, A, "b", "y"),
        vote(P, A, B, "tie", "z"),  # A: 2, tie: 1
        vote(P, A, C, "a", "x"),
        vote(P, A, C, "tie", "y"),
        vote(P, C, A, "tie", "z"),
    ]  # tie: 2 of 3
    res = run(tmp_path, js)
    got = pairs(res)
    assert list(got) == [("Paris", "Lyon")]
    row = got[("Paris", "Lyon")]
    assert row["n_votes"] == 3 and row["agreement"] == pytest.approx(2 / 3)
    assert row["margin"] == pytest.approx(2 / 3)  # (2 - 0) / 3
    assert row["score_chosen"] == pytest.approx(2.5 / 3) and row["score_rejected"] == pytest.approx(0.5 / 3)
    assert res.report["drops"]["pairs"]["ties"]["count"] == 1


def test_mean_method_follows_the_mean_score_difference(tmp_path):
    # Ratings of A and B shown together by three people: mean A - B = (3 - 1 - 1) / 3 > 0,
    # although two of the three preferred B.
    js = [
        judge(P, [A, B], [5, 2], "x", kind="rating"),
        judge(P, [A, B], [3, 4], "y", kind="rating"),
        judge(P, [A, B], [3, 4], "z", kind="rating"),
    ]
    got = pairs(run(tmp_path, js, {"votes": {"method": "mean"}}))
    row = got[("Paris", "Lyon")]
    assert row["margin"] == pytest.approx(1 / 3) and row["agreement"] == pytest.approx(1 / 3)
    assert row["score_chosen"] == pytest.approx(11 / 3)
    maj = pairs(run(tmp_path / "m", js))
    assert list(maj) == [("Lyon", "Paris")]


def test_bradley_terry_ranks_by_all_comparisons_of_the_prompt(tmp_path):
    # A beats B twice, B beats C twice, C beats A once: A > B > C. The single C-vs-A vote says C,
    # but Bradley-Terry over every comparison of the prompt puts A above C.
    js = [
        vote(P, A, B, "a", "x"),
        vote(P, A, B, "a", "y"),
        vote(P, B, C, "a", "x"),
        vote(P, B, C, "a", "y"),
        vote(P, C, A, "a", "x"),
    ]
    got = pairs(run(tmp_path, js, {"votes": {"method": "bradley_terry"}}))
    assert set(got) == {("Paris", "Lyon"), ("Lyon", "Marseille"), ("Paris", "Marseille")}
    assert got[("Paris", "Marseille")]["margin"] > got[("Paris", "Lyon")]["margin"] > 0
    assert got[("Paris", "Marseille")]["agreement"] == 0.0  # the one direct vote disagreed


def test_human_votes_set_ai_votes_aside_by_default(tmp_path):
    js = [
        vote(P, A, B, "a", "alice"),
        vote(P, A, B, "b", "ai:j1:t", annotator_type="ai"),
        vote(P, A, B, "b", "ai:j2:t", annotator_type="ai"),
    ]
    res = run(tmp_path, js)
    assert list(pairs(res)) == [("Paris", "Lyon")]
    assert res.report["votes"]["ai_votes_set_aside_for_human_votes"] == 2
    mixed = pairs(run(tmp_path / "all", js, {"votes": {"human_over_ai": False}}))
    assert list(mixed) == [("Lyon", "Paris")]  # two AI votes outvote one person


def test_adjudication_overrides_everything(tmp_path):
    first = [vote(P, A, B, "a", "x"), vote(P, A, B, "a", "y"), vote(P, A, B, "a", "z")]
    ruling = vote(
        P,
        B,
        A,
        "a",
        "reviewer",
        annotator_type="adjudicator",
        metadata={"adjudicates": [j.judgement_id for j in first]},
    )
    res = run(tmp_path, [*first, ruling])
    row = pairs(res)[("Lyon", "Paris")]
    assert row["n_votes"] == 1 and row["annotators"] == ["reviewer"]
    assert res.report["votes"]["set_aside_by_adjudication_list"] == 3


def test_adjudicator_wins_even_without_listing_the_votes(tmp_path):
    js = [vote(P, A, B, "a", "x"), vote(P, A, B, "a", "y"), vote(P, A, B, "b", "boss", annotator_type="adjudicator")]
    res = run(tmp_path, js)
    assert list(pairs(res)) == [("Lyon", "Paris")]
    assert res.report["votes"]["votes_overridden_by_adjudicator"] == 2


def test_both_order_ai_verdicts_that_disagree_count_as_one_tie(tmp_path):
    ai = {"annotator": "ai:judge:v1", "annotator_type": "ai"}
    js = [
        # A vs B: the judge picked whatever was shown first → position bias → one tie vote.
        vote(P, A, B, "a", metadata={"order_key": "k1", "order": "ab"}, **ai),
        vote(P, B, A, "a", metadata={"order_key": "k1", "order": "ba"}, **ai),
        # A vs C: consistent in both orders → one vote for A.
        vote(P, A, C, "a", metadata={"order_key": "k2", "order": "ab"}, **ai),
        vote(P, C, A, "b", metadata={"order_key": "k2", "order": "ba"}, **ai),
    ]
    res = run(tmp_path, js)
    got = pairs(res)
    assert list(got) == [("Paris", "Marseille")] and got[("Paris", "Marseille")]["n_votes"] == 1
    assert len(got[("Paris", "Marseille")]["judgement_ids"]) == 2
    assert res.report["votes"]["both_order_disagreements"] == 1
    assert res.report["drops"]["pairs"]["ties"]["count"] == 1
    # With the policy off, the two orders are two votes: A vs B is then 1:1, still a tie, but A vs C has 2 votes.
    off = pairs(run(tmp_path / "off", js, {"votes": {"both_order_ties": False}}))
    assert off[("Paris", "Marseille")]["n_votes"] == 2


def test_a_persons_later_vote_replaces_the_earlier_one(tmp_path):
    js = [vote(P, A, B, "a", "alice", minute=1), vote(P, A, B, "b", "alice", minute=5), vote(P, A, B, "b", "bob")]
    res = run(tmp_path, js)
    row = pairs(res)[("Lyon", "Paris")]
    assert row["n_votes"] == 2 and row["agreement"] == 1.0
    assert res.report["votes"]["replaced_by_later_human_vote"] == 1
    keep_all = pairs(run(tmp_path / "all", js, {"votes": {"latest_human_vote": False}}))
    assert keep_all[("Lyon", "Paris")]["n_votes"] == 3


def test_both_bad_comparisons_drop_their_pair_by_default_or_keep_it(tmp_path):
    js = [vote(P, A, B, "a", "x", both_bad=True), vote(P, A, B, "a", "y", both_bad=True), vote(P, A, B, "a", "z")]
    res = run(tmp_path, js)
    assert pairs(res) == {} and res.report["drops"]["pairs"]["both_bad"]["count"] == 1
    unpaired = pq.read_table(res.tables["unpaired"]).to_pylist()
    assert sorted((u["completion"], u["label"], u["derived_from"]) for u in unpaired) == [
        ("Lyon", False, "both_bad"),
        ("Paris", False, "both_bad"),
    ]
    kept = pairs(run(tmp_path / "keep", js, {"votes": {"both_bad": "keep"}}))
    assert list(kept) == [("Paris", "Lyon")]


def test_only_the_listed_aspects_count(tmp_path):
    js = [vote(P, A, B, "a", "x", aspect="helpfulness"), vote(P, A, B, "b", "x", aspect="harmlessness")]
    got = pairs(run(tmp_path, js, {"votes": {"aspects": ["harmlessness"]}}))
    assert list(got) == [("Lyon", "Paris")] and got[("Lyon", "Paris")]["aspect"] == "harmlessness"


def test_a_ranking_becomes_every_pair_it_implies(tmp_path):
    js = [judge(P, [C, A, B], [-2, -1, -3], "x", kind="ranking")]  # A first, C second, B last
    assert set(pairs(run(tmp_path, js))) == {("Paris", "Marseille"), ("Paris", "Lyon"), ("Marseille", "Lyon")}


def test_score_pairs_rows_are_not_votes_unless_asked_for(tmp_path):
    """A trained model's verdicts on its own training pairs (the real `prefkit score-pairs` builder)
    would otherwise become the next dataset's votes: here they would flip the pair people chose."""
    from prefkit.score import disagreement_judgements

    row = {"prompt_id": P.prompt_id, "chosen_id": A.response_id, "rejected_id": B.response_id}

    def margin(m):
        return {"row": row, "margin": m, "split": "train", "index": 0, "chosen_reward": m, "rejected_reward": 0.0}

    disputes = disagreement_judgements([margin(-3.0)], "run1", top=5)
    second = disagreement_judgements([margin(-2.0)], "run2", top=5)
    js = [vote(P, A, B, "a", "ai:judge:t", annotator_type="ai"), *disputes, *second]
    res = run(tmp_path, js)
    assert list(pairs(res)) == [("Paris", "Lyon")]
    assert res.report["votes"]["model_verdicts_left_out"] == 2
    counted = run(tmp_path / "all", js, {"votes": {"model_verdicts": True}})
    assert list(pairs(counted)) == [("Lyon", "Paris")]  # the two model verdicts outvote the judge
    assert counted.report["votes"]["model_verdicts_left_out"] == 0
