"""Agreement and bias measures, checked against values worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from annotate import agreement
from annotate.app import metrics
from annotate.store import Store
from tests.annotate.app.conftest import make_store
from tests.support.factories import pairwise


def _df(labels: dict[str, list[tuple[str, str]]]) -> pd.DataFrame:
    rows = [
        {
            "item": item,
            "annotator": who,
            "label": label,
            "annotator_type": "human",
            "judgement_id": f"{item}-{who}",
            "prompt_id": item,
            "created_at": 0,
            "left_won": None,
            "longer_won": None,
            "gold_correct": None,
        }
        for item, votes in labels.items()
        for who, label in votes
    ]
    return pd.DataFrame(rows)


def test_cohen_kappa_by_hand():
    # p_o = 3/4, p_e = (2·1 + 2·3)/16 = 1/2 → κ = 1/2
    assert agreement.cohen_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == pytest.approx(0.5)
    assert agreement.cohen_kappa(["x", "y"], ["x", "y"]) == pytest.approx(1.0)


def test_fleiss_and_krippendorff_by_hand():
    df = _df(
        {
            "i1": [("a", "first"), ("b", "first"), ("c", "first")],
            "i2": [("a", "first"), ("b", "second"), ("c", "second")],
        }
    )
    # P1 = 1, P2 = 1/3, P̄ = 2/3; p = (4/6, 2/6), P_e = 5/9 → κ = (2/3 − 5/9)/(4/9) = 1/4
    assert metrics.fleiss_kappa(df) == pytest.approx(0.25)
    # coincidences o_ff = 3, o_fs = o_sf = 1, o_ss = 1; n = 6; D_o = 1/3, D_e = 16/30 → α = 0.375
    assert metrics.krippendorff_alpha(df) == pytest.approx(0.375)
    assert metrics.percent_agreement(df) == pytest.approx(4 / 6)


def test_perfect_agreement_and_review_queue():
    same = _df(
        {
            "i1": [("a", "first"), ("b", "first")],
            "i2": [("a", "tie"), ("b", "tie")],
            "i3": [("a", "second"), ("b", "second")],
        }
    )
    assert metrics.fleiss_kappa(same) == pytest.approx(1.0)
    assert metrics.krippendorff_alpha(same) == pytest.approx(1.0)
    assert metrics.review_queue(same).empty
    split = _df({"i1": [("a", "first"), ("b", "second")]})
    queue = metrics.review_queue(split)
    assert list(queue["item"]) == ["i1"] and queue["reason"][0] == "humans disagree"


def test_labels_from_the_store_are_order_free_and_measure_biases(tmp_path):
    store = make_store(tmp_path / "s", n_prompts=1, texts=["short", "a much longer answer"])
    con = store.connect()
    p_id, short_id, long_id = con.execute(
        "SELECT prompt_id, min_by(response_id, length(content)), max_by(response_id, length(content)) FROM responses GROUP BY 1"
    ).fetchone()

    class P:  # the factories take records; ids are all they read
        prompt_id = p_id

    class R:
        def __init__(self, rid):
            self.response_id = rid

    s, lg = R(short_id), R(long_id)
    store.append(
        "judgements",
        [
            pairwise(P, lg, s, winner=0, annotator="a"),  # long shown left, long wins
            pairwise(P, s, lg, winner=1, annotator="b"),  # long shown right, long wins
            pairwise(P, s, lg, winner=1, annotator="ai:j:t", annotator_type="ai"),
        ],
    )
    df = metrics.load_pairwise(Store(store.root).connect())
    humans = df[df.annotator_type == "human"]
    assert humans["label"].nunique() == 1  # the same preference, whatever the order shown
    assert metrics.share(humans["longer_won"]) == 1.0 and metrics.share(humans["left_won"]) == 0.5
    assert metrics.human_vs_ai(df) == (1.0, 1)
    per = metrics.per_annotator(humans).set_index("annotator")
    assert per.loc["a", "agreement"] == 1.0 and per.loc["a", "left_won"] == 1.0
