"""The Dashboard's pictures (issue 18): each figure in `metrics` against a second computation here
(scikit-learn's cohen_kappa_score for κ, pandas straight from the Parquet rows for rates and biases),
on random team stores and on edge cases; and the page draws every chart, with data, from those
figures, the same ones `prefkit stats --json` prints."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefkit.annotate.app import metrics
from prefkit.annotate.contract import Prompt, Response
from prefkit.annotate.store import Store
from sklearn.metrics import cohen_kappa_score
from streamlit.testing.v1 import AppTest

from tests.annotate.app.conftest import make_store
from tests.support.factories import pairwise

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
PEOPLE = ["alice", "bob", "carol", "dave"]
JUDGE = "ai:judge-m:pairwise-v1"


class _P:
    def __init__(self, pid):
        self.prompt_id = pid


class _R:
    def __init__(self, rid):
        self.response_id = rid


def team_store(path: Path, seed: int, n: int = 30) -> Store:
    """A store with a team: four people (some items by several, re-votes, skips, fast flags, gold
    items, per-aspect answers, binary labels), an imported voter, and an AI judge in both orders."""
    rng = random.Random(seed)
    store = Store(path)
    prompts = [Prompt(messages=[{"role": "user", "content": f"Question {i}?"}], source="test") for i in range(n)]
    # lengths differ, and now and then tie, so the length bias has something to count
    responses = [
        Response(prompt_id=p.prompt_id, content=f"Answer {j} to {i}." + " more" * rng.choice([0, 2, 5, 9]))
        for i, p in enumerate(prompts)
        for j in range(2)
    ]
    with store.batch() as b:
        b.append("prompts", prompts)
        b.append("responses", responses)
    con = store.connect()
    pairs = con.execute(
        "SELECT prompt_id, list(response_id ORDER BY response_id) FROM responses GROUP BY 1 ORDER BY 1"
    ).fetchall()
    rows = []
    for k, (pid, ids) in enumerate(pairs):
        truth = rng.randint(0, 1)
        gold = k % 5 == 0
        for who in rng.sample(PEOPLE, rng.randint(1, 4)):
            for v in range(rng.choice([1, 1, 1, 2])):  # a re-vote now and then
                at = T0 + timedelta(minutes=3 * k + rng.randint(0, 90), seconds=v)
                shown = ids if rng.random() < 0.5 else ids[::-1]
                r = rng.random()
                if r < 0.08:
                    rows.append(_row(pid, shown, 0, who, at, status="skipped", scores=[], duration_ms=900))
                    continue
                winner_id = ids[truth] if r < 0.75 else ids[1 - truth]
                winner = -1 if r > 0.93 else shown.index(winner_id)
                ms = int(rng.lognormvariate(9, 0.8))
                status = "flagged" if ms < 2000 else "submitted"
                meta = {"flag": f"fast: {ms / 1000:.1f} s < 2 s"} if status == "flagged" else {}
                if gold:
                    meta |= {"gold": True, "correct": winner >= 0 and shown[winner] == ids[truth]}
                rows.append(_row(pid, shown, winner, who, at, status=status, duration_ms=ms, metadata=json.dumps(meta)))
                if rng.random() < 0.5:  # an aspect sub-question: the same answer, not a label of its own
                    rows.append(_row(pid, shown, winner, who, at, aspect="helpfulness", duration_ms=ms))
        if rng.random() < 0.4:
            rows.append(_row(pid, ids, rng.randint(0, 1), "src:imported", T0, annotator_type="import"))
        if rng.random() < 0.8:  # the AI judge in both orders, favouring the first shown now and then
            for order, shown in (("ab", ids), ("ba", ids[::-1])):
                w = 0 if rng.random() < 0.3 else shown.index(ids[truth])
                rows.append(_row(pid, shown, w, JUDGE, T0, annotator_type="ai", metadata=json.dumps({"order": order})))
    store.append("judgements", rows)
    return store


def _row(pid, shown, winner, who, at, **kw):
    scores = kw.pop("scores", None)
    j = pairwise(_P(pid), _R(shown[0]), _R(shown[1]), winner=winner, annotator=who, created_at=at, **kw)
    if scores is not None:
        j.scores = scores
    return j


def _raw(store: Store) -> pd.DataFrame:
    """The judgements straight from the Parquet files (no DuckDB), with the responses' lengths."""
    files = sorted(Path(store.root).glob("judgements/*/*.parquet"))
    raw = pa.concat_tables(pq.read_table(p) for p in files).to_pandas()
    resp = pa.concat_tables(pq.read_table(p) for p in sorted(Path(store.root).glob("responses/*/*.parquet")))
    length = {
        r: len(c)
        for r, c in zip(resp.column("response_id").to_pylist(), resp.column("content").to_pylist(), strict=True)
    }
    raw["item"] = [
        f"{p}|{min(r)}|{max(r)}" if len(r) == 2 else None for p, r in zip(raw.prompt_id, raw.response_ids, strict=True)
    ]
    raw["len"] = [[length[x] for x in r] for r in raw.response_ids]
    return raw.sort_values(["created_at", "judgement_id"]).reset_index(drop=True)


def _counted_pairwise(raw: pd.DataFrame) -> pd.DataFrame:
    """Overall pairwise answers that count: people's latest per item, every AI and imported row."""
    pw = raw[(raw.kind == "pairwise") & (raw.aspect == "overall") & raw.status.isin(["submitted", "flagged"])]
    pw = pw[[len(s) == 2 for s in pw.scores]].copy()
    pw["label"] = [
        "tie" if s[0] == s[1] else ("first" if (s[0] > s[1]) == (r[0] == min(r)) else "second")
        for s, r in zip(pw.scores, pw.response_ids, strict=True)
    ]
    human = pw[pw.annotator_type == "human"].groupby(["item", "annotator"]).tail(1)
    return pd.concat([human, pw[pw.annotator_type != "human"]]).sort_values(["created_at", "judgement_id"])


@pytest.fixture(params=[3, 11])
def team(request, tmp_path):
    store = team_store(tmp_path / "s", request.param)
    con = store.connect()
    yield store, con, _raw(store)
    con.close()


def test_kappa_matrix_matches_scikit_learn(team):
    store, con, raw = team
    counted = _counted_pairwise(raw)
    labels = {}
    for (item, who), g in counted.groupby(["item", "annotator"]):
        if who == JUDGE:  # both orders: their common label, or a tie when they differ
            labels[(item, who)] = g.label.iloc[0] if g.label.nunique() == 1 else "tie"
        else:
            labels[(item, who)] = g.label.iloc[-1]
    wide = pd.Series(labels).unstack()
    matrix = metrics.kappa_matrix(metrics.load_pairwise(con)).set_index(["a", "b"])
    raters = [*PEOPLE, "src:imported", JUDGE]
    assert sorted(matrix.index.get_level_values(0).unique()) == sorted(raters)
    checked = 0
    for a in raters:
        for b in raters:
            if a == b:
                continue
            shared = wide[[a, b]].dropna()
            got = matrix.loc[(a, b)]
            assert got["items"] == len(shared)
            if len(shared) == 0 or len(set(shared[a]) | set(shared[b])) < 2:
                assert got["kappa"] is None or pd.isna(got["kappa"])
                continue
            assert got["kappa"] == pytest.approx(cohen_kappa_score(shared[a], shared[b]), abs=1e-9)
            assert got["agreement"] == pytest.approx((shared[a] == shared[b]).mean(), abs=1e-12)
            checked += 1
    assert checked >= 10


def test_bias_gold_and_activity_match_pandas_on_the_raw_rows(team):
    store, con, raw = team
    df = metrics.load_pairwise(con)
    counted = _counted_pairwise(raw)
    decisive = counted[[s[0] != s[1] for s in counted.scores]]
    first_won = decisive.assign(v=[s[0] > s[1] for s in decisive.scores])
    unequal = decisive[[a != b for a, b in decisive.len]]
    longer = unequal.assign(
        v=[(s[0] > s[1]) == (n[0] > n[1]) for s, n in zip(unequal.scores, unequal.len, strict=True)]
    )
    bias = metrics.bias_per_rater(df).set_index("annotator")
    for who in [*PEOPLE, JUDGE]:
        assert bias.loc[who, "first_shown_won"] == pytest.approx(first_won[first_won.annotator == who].v.mean())
        assert bias.loc[who, "longer_won"] == pytest.approx(longer[longer.annotator == who].v.mean())
        assert bias.loc[who, "decisive"] == (first_won.annotator == who).sum()

    # gold: running accuracy per person over their latest votes on gold items
    gold = counted[counted.annotator_type == "human"].copy()
    gold["correct"] = [json.loads(m).get("correct") for m in gold.metadata]
    gold = gold[gold.correct.notna()]
    got = metrics.gold_over_time(df)
    for who, g in gold.groupby("annotator"):
        mine = got[got.annotator == who]
        want = g.correct.astype(float).expanding().mean().to_numpy()
        np.testing.assert_allclose(mine.gold_accuracy.to_numpy(), want, atol=1e-12)

    # activity: one label per answer (sub-questions are not labels), skips counted apart
    act = metrics.load_activity(con)
    mine = raw[(raw.annotator_type == "human") & ~((raw.kind == "pairwise") & (raw.aspect != "overall"))]
    per = metrics.per_person_activity(act, 2.0).set_index("annotator")
    for who, g in mine.groupby("annotator"):
        answers = g[g.status.isin(["submitted", "flagged"])]
        assert per.loc[who, "answers"] == len(answers) and per.loc[who, "skips"] == (g.status == "skipped").sum()
        assert per.loc[who, "flagged_fast"] == (answers.status == "flagged").sum()
        assert per.loc[who, "under_threshold"] == pytest.approx((answers.duration_ms < 2000).mean())
        assert per.loc[who, "median_seconds"] == pytest.approx(answers.duration_ms.median() / 1000)
    over = metrics.labels_over_time(act)
    for who, g in over.groupby("annotator"):
        assert list(g.labels) == list(range(1, len(g) + 1))
        assert len(g) == len(mine[(mine.annotator == who) & mine.status.isin(["submitted", "flagged"])])


def test_agreement_by_task_matches_a_recomputation(team):
    """Per kind and aspect, from the raw rows: binary labels added on a few items, the overall and
    helpfulness pairwise answers; percent agreement by pairs and Fleiss' κ with statsmodels."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    store, con, raw = team
    # two binary labels per item on half the items
    pairs = con.execute("SELECT prompt_id, min(response_id) FROM responses GROUP BY 1 ORDER BY 1").fetchall()
    rng = random.Random(5)
    bins = []
    for pid, rid in pairs[::2]:
        for who in ("alice", "bob"):
            bins.append(_binary(pid, rid, who, rng.random() < 0.6))
    store.append("judgements", bins)
    con = Store(store.root).connect()
    got = metrics.agreement_by_task(metrics.load_task_labels(con)).set_index(["task", "aspect"])
    raw = _raw(store)
    for kind, aspect in (
        ("binary", "overall"),
        ("pairwise", "overall"),
        ("pairwise", "helpfulness"),
    ):
        sel = raw[(raw.kind == kind) & (raw.aspect == aspect) & raw.status.isin(["submitted", "flagged"])]
        sel = sel[
            sel.annotator_type.isin(["human", "import"])
            & np.array([len(s) == len(r) for s, r in zip(sel.scores, sel.response_ids, strict=True)], dtype=bool)
        ]
        sel = sel.assign(
            label=[
                f"{s[0]:g}"
                if kind == "binary"
                else ("tie" if s[0] == s[1] else ("first" if (s[0] > s[1]) == (r[0] == min(r)) else "second"))
                for s, r in zip(sel.scores, sel.response_ids, strict=True)
            ],
            unit=[f"{p}|{','.join(sorted(r))}" for p, r in zip(sel.prompt_id, sel.response_ids, strict=True)],
        )
        counted = pd.concat(
            [
                sel[sel.annotator_type == "human"].groupby(["unit", "annotator"]).tail(1),
                sel[sel.annotator_type == "import"],
            ]
        )
        units = [list(g) for _, g in counted.groupby("unit")["label"] if len(g) >= 2]
        row = got.loc[(kind, aspect)]
        assert row["items"] == len(units)
        same = sum(sum(a == b for i, a in enumerate(u) for b in u[i + 1 :]) for u in units)
        total = sum(len(u) * (len(u) - 1) / 2 for u in units)
        assert row["percent_agreement"] == pytest.approx(same / total, abs=1e-12)
        # statsmodels needs the same number of raters per unit: check it on the units with exactly two
        two = [u for u in units if len(u) == 2]
        if kind == "binary" and len({x for u in two for x in u}) > 1:
            table, _ = aggregate_raters(np.array([[hash(x) for x in u] for u in two]))
            assert row["fleiss_kappa"] == pytest.approx(fleiss_kappa(table), abs=1e-9)


def _binary(pid, rid, who, good):
    from prefkit.annotate.contract import Judgement
    from prefkit.annotate.ids import new_judgement_id

    return Judgement(
        judgement_id=new_judgement_id(),
        prompt_id=pid,
        kind="binary",
        annotator=who,
        annotator_type="human",
        response_ids=[rid],
        scores=[1.0 if good else 0.0],
        created_at=T0,
    )


def test_task_labels_do_not_depend_on_the_order_shown():
    assert metrics.task_label("ranking", ["b", "a", "c"], [-2.0, -1.0, -2.0], None) == "-1,-2,-2"
    assert metrics.task_label("ranking", ["a", "c", "b"], [-1.0, -2.0, -2.0], None) == "-1,-2,-2"
    assert metrics.task_label("pairwise", ["b", "a"], [1.0, 0.0], None) == "second"
    assert metrics.task_label("pairwise", ["a", "b"], [0.0, 1.0], None) == "second"
    assert metrics.task_label("steps", ["a"], [0.5], [1, -1]) == "1,-1"
    assert metrics.task_label("rating", ["a"], [4.0], None) == "4"


def test_edge_cases_give_none_not_numbers(tmp_path):
    store = make_store(tmp_path / "s", n_prompts=2)
    con = store.connect()
    df, act = metrics.load_pairwise(con), metrics.load_activity(con)
    assert metrics.kappa_matrix(df).empty and metrics.bias_per_rater(df).empty and metrics.gold_over_time(df).empty
    assert metrics.labels_over_time(act).empty and metrics.per_person_activity(act, 2).empty
    assert metrics.agreement_by_task(metrics.load_task_labels(con)).empty
    # two people, one label each throughout: κ undefined (scikit-learn says NaN), agreement 1
    (p1, ids1), (p2, ids2) = con.execute(
        "SELECT prompt_id, list(response_id ORDER BY response_id) FROM responses GROUP BY 1 ORDER BY 1"
    ).fetchall()
    store.append("judgements", [_row(p, i, -1, who, T0) for p, i in ((p1, ids1), (p2, ids2)) for who in ("a", "b")])
    con = Store(store.root).connect()
    m = metrics.kappa_matrix(metrics.load_pairwise(con)).set_index(["a", "b"])
    assert m.loc[("a", "b"), "kappa"] is None and m.loc[("a", "b"), "agreement"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn says why it gives NaN
        assert np.isnan(cohen_kappa_score(["tie", "tie"], ["tie", "tie"]))
    assert metrics.bias_per_rater(metrics.load_pairwise(con)).first_shown_won.isna().all()  # ties only


def test_labelling_rate_and_finish_estimate():
    times = pd.Series([T0 + timedelta(minutes=10 * i) for i in range(7)])  # 6 gaps of 10 minutes
    assert metrics.labelling_rate(times) == pytest.approx(6.0)
    assert metrics.labelling_rate(times, last=3) == pytest.approx(6.0)
    uneven = pd.Series([T0, T0 + timedelta(hours=10), T0 + timedelta(hours=10, minutes=30)])
    assert metrics.labelling_rate(uneven, last=2) == pytest.approx(2.0)  # only the recent pace counts
    assert metrics.labelling_rate(pd.Series([T0])) is None and metrics.labelling_rate(pd.Series([T0, T0])) is None
    assert metrics.hours_left(12, 6.0) == 2.0 and metrics.hours_left(0, None) == 0.0
    assert metrics.hours_left(5, None) is None


def _dashboard():
    from prefkit.annotate.app.pages import dashboard

    dashboard.page()


CHARTS = ["progress", "labels-over-time", "time-on-task", "kappa-matrix", "agreement-by-task", "gold-over-time", "bias"]


def chart_rows(at: AppTest, key: str) -> list[int]:
    """Rows in each data set of the Vega-Lite chart inside the container keyed chart-<key>."""
    boxes = [el for el in _walk(at.main) if str(getattr(el.proto, "id", "")).endswith(f"-chart-{key}")]
    assert len(boxes) == 1, key
    (chart,) = [el for el in _walk(boxes[0]) if getattr(el, "type", None) == "vega_lite_chart"]
    return [pa.ipc.open_stream(d.data.data).read_all().num_rows for d in chart.proto.datasets]


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_the_page_draws_every_chart_with_data_and_matches_prefkit_stats(tmp_path, monkeypatch):
    store = team_store(tmp_path / "s", 5)
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    at = AppTest.from_function(_dashboard, default_timeout=90).run()
    assert not at.exception, at.exception
    for key in CHARTS:
        rows = chart_rows(at, key)
        assert rows and min(rows) > 0, (key, rows)

    out = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "stats", "--json", "--store", str(store.root)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    team = json.loads(out.stdout)["team"]
    shown = {}
    for t in at.dataframe:
        shown[tuple(t.value.columns)] = t.value
    kappa = next(v for c, v in shown.items() if c == ("a", "b", "items", "kappa", "agreement"))
    want = {(r["a"], r["b"]): r for r in team["cohen_kappa"]}
    assert len(kappa) == len(want) > 0
    for _, row in kappa.iterrows():
        w = want[(row.a, row.b)]
        assert row["items"] == w["items"]
        assert row["kappa"] == ("—" if w["kappa"] is None else f"{w['kappa']:.2f}")
    bias = next(v for c, v in shown.items() if c == ("annotator", "type", "decisive", "first_shown_won", "longer_won"))
    for w in team["bias"]:
        row = bias[bias.annotator == w["annotator"]].iloc[0]
        assert row.first_shown_won == ("—" if w["first_shown_won"] is None else f"{w['first_shown_won']:.2f}")
