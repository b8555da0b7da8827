"""Agreement and bias measures, checked against values worked out by hand and against reference
libraries on the store's own rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.annotate import agreement
from prefkit.annotate.app import metrics
from prefkit.annotate.store import Store
from sklearn.metrics import cohen_kappa_score
from streamlit.testing.v1 import AppTest

from tests.annotate.app.conftest import make_store
from tests.annotate.test_agreement import _fleiss_by_pairs, _percent_by_pairs
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


# --- each person counts once per item (issue 14, defect 7) ----------------------------------------


def _store_with_pairs(tmp_path, n: int):
    store = make_store(tmp_path / "s", n_prompts=n)
    con = store.connect()
    pairs = con.execute("SELECT prompt_id, list(response_id ORDER BY response_id) FROM responses GROUP BY 1 ORDER BY 1")
    return store, pairs.fetchall()


class _P:
    def __init__(self, pid):
        self.prompt_id = pid


class _R:
    def __init__(self, rid):
        self.response_id = rid


def _vote(pid, ids, winner, annotator, at, annotator_type="human", **kw):
    """A vote on the pair (ids sorted), shown in the order given by `ids`; `winner` indexes `ids`."""
    return pairwise(
        _P(pid),
        _R(ids[0]),
        _R(ids[1]),
        winner=winner,
        annotator=annotator,
        annotator_type=annotator_type,
        created_at=at,
        **kw,
    )


def test_a_revote_replaces_the_earlier_vote(tmp_path):
    store, pairs = _store_with_pairs(tmp_path, 3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for k, (pid, ids) in enumerate(pairs):  # alice and bob agree on every item in the end ...
        rows += [_vote(pid, ids, k % 2, "alice", t0 + timedelta(minutes=1)), _vote(pid, ids, k % 2, "bob", t0)]
    pid, ids = pairs[0]
    rows.append(_vote(pid, ids, 1, "alice", t0))  # ... after alice changed her mind on the first
    store.append("judgements", rows)
    df = metrics.load_pairwise(Store(store.root).connect())
    humans = df[df.annotator_type == "human"]
    assert len(humans) == 6
    assert metrics.percent_agreement(humans) == 1.0
    assert metrics.fleiss_kappa(humans) == 1.0 and metrics.krippendorff_alpha(humans) == 1.0
    per = metrics.per_annotator(humans).set_index("annotator")
    assert per.loc["alice", "labels"] == 3 and per.loc["alice", "agreement"] == 1.0
    assert metrics.review_queue(df).empty


def test_dashboard_figures_match_a_recomputation_from_the_parquet_rows(tmp_path):
    """Random votes with re-votes (some at the same instant: the greater judgement_id wins, as in
    curation), imported voters (never collapsed), per-aspect rows and AI votes, read back from the
    store's Parquet files with pyarrow and recomputed with the reference libraries."""
    rng = random.Random(7)
    store, pairs = _store_with_pairs(tmp_path, 40)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    people = ["alice", "bob", "carol", "dave", "erin"]
    rows = []
    for pid, ids in pairs:
        bias = rng.random()
        for who in rng.sample(people, rng.randint(1, 5)):
            for _ in range(rng.choice([1, 1, 2, 3])):  # re-votes
                at = t0 + timedelta(seconds=rng.randint(0, 3))  # equal instants happen
                shown = ids if rng.random() < 0.5 else ids[::-1]
                winner = -1 if rng.random() < 0.15 else int(rng.random() < bias)
                rows.append(_vote(pid, shown, winner, who, at))
        for voter in ("src:annotator1", "src:annotator1", "src:annotator2"):  # one name, two imported votes
            if rng.random() < 0.5:
                rows.append(_vote(pid, ids, int(rng.random() < bias), voter, t0, "import"))
        rows.append(_vote(pid, ids, 0, "alice", t0, aspect="helpfulness"))  # not an `overall` vote
        rows.append(_vote(pid, ids, rng.randint(0, 1), "ai:m:t", t0, "ai"))
    store.append("judgements", rows)

    table = pa.concat_tables(pq.read_table(p) for p in sorted(Path(store.root).glob("judgements/*/*.parquet")))
    raw = table.to_pandas()
    raw = raw[(raw.aspect == "overall") & raw.annotator_type.isin(["human", "import"])]
    raw = raw.assign(
        item=[f"{p}|{min(r)}|{max(r)}" for p, r in zip(raw.prompt_id, raw.response_ids, strict=True)],
        label=[
            "tie" if s[0] == s[1] else ("first" if (s[0] > s[1]) == (r[0] == min(r)) else "second")
            for s, r in zip(raw.scores, raw.response_ids, strict=True)
        ],
    )
    raw = raw.sort_values(["created_at", "judgement_id"])
    human = raw[raw.annotator_type == "human"].groupby(["item", "annotator"]).tail(1)
    counted = pd.concat([human, raw[raw.annotator_type == "import"]])
    assert len(counted) < len(raw)  # re-votes were there to drop
    units = [list(g) for _, g in counted.groupby("item")["label"]]

    df = metrics.load_pairwise(Store(store.root).connect())
    people_df = df[df.annotator_type.isin(metrics.HUMAN)]
    assert sorted(people_df.judgement_id) == sorted(counted.judgement_id)
    names = sorted({x for u in units for x in u})
    matrix = pd.DataFrame(
        [
            (item, f"{who}#{k}", label)
            for item, g in counted.groupby("item")
            for k, (who, label) in enumerate(zip(g.annotator, g.label, strict=True))
        ]
    )
    wide = matrix.assign(code=matrix[2].map(names.index)).pivot(index=1, columns=0, values="code")
    alpha = krippendorff.alpha(reliability_data=wide.to_numpy(dtype=float), level_of_measurement="nominal")
    assert metrics.krippendorff_alpha(people_df) == pytest.approx(alpha, abs=1e-9)
    assert metrics.fleiss_kappa(people_df) == pytest.approx(_fleiss_by_pairs(units), abs=1e-9)
    assert metrics.percent_agreement(people_df) == pytest.approx(_percent_by_pairs(units), abs=1e-9)

    # per person: mean Cohen's κ (scikit-learn) with each colleague over ≥ 5 shared items
    per = metrics.per_annotator(people_df).set_index("annotator")
    latest = counted.groupby(["item", "annotator"])["label"].last().unstack()  # counted is in time order
    for who in people:
        kappas = []
        for other in latest.columns.drop(who):
            shared = latest[[who, other]].dropna()
            if len(shared) >= 5:
                k = cohen_kappa_score(shared[who], shared[other])
                if not np.isnan(k):
                    kappas.append(k)
        assert per.loc[who, "cohen_kappa"] == pytest.approx(np.mean(kappas), abs=1e-9)
        assert per.loc[who, "labels"] == (counted.annotator == who).sum()


def test_undefined_figures_say_why():
    one_label = _df({"i1": [("a", "tie"), ("b", "tie")], "i2": [("a", "tie"), ("b", "tie")]})
    assert metrics.fleiss_kappa(one_label) is None and metrics.krippendorff_alpha(one_label) is None
    assert metrics.percent_agreement(one_label) == 1.0
    assert metrics.undefined_reason(one_label) == agreement.ONE_LABEL
    alone = _df({"i1": [("a", "first")], "i2": [("b", "second")]})
    assert metrics.percent_agreement(alone) is None and metrics.fleiss_kappa(alone) is None
    assert metrics.undefined_reason(alone, chance_corrected=False) == agreement.NO_OVERLAP


def _dashboard():
    from prefkit.annotate.app.pages import dashboard

    dashboard.page()


def test_dashboard_shows_a_dash_and_the_reason_for_undefined_figures(tmp_path, monkeypatch):
    store, pairs = _store_with_pairs(tmp_path, 3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.append("judgements", [_vote(pid, ids, -1, who, t0) for pid, ids in pairs for who in ("alice", "bob")])
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)  # open mode: everyone may see the dashboard
    at = AppTest.from_function(_dashboard, default_timeout=60).run()
    assert not at.exception
    shown = {m.label: m for m in at.metric}
    assert shown["percent agreement"].value == "1.00"  # every tie agrees with every tie
    for name in ("Fleiss' κ", "Krippendorff's α"):
        assert shown[name].value == "—" and shown[name].proto.help == agreement.ONE_LABEL
