"""The AI judges page under Streamlit's AppTest, on the bundled demo store: it renders, draws the
confusion matrix and the reliability diagram with data, its numbers are `prefkit judge-eval --json`'s,
and its disagreements are one link from a Review queue that lists them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from prefkit.annotate.app import metrics
from prefkit.annotate.store import Store
from streamlit.testing.v1 import AppTest

from prefkit.cli import main
from tests.annotate.app.conftest import make_store

ROOT = Path(__file__).resolve().parents[3]
JUDGE = "ai:simulated-judge:pairwise"
RECORDED = "ai:dpo-recorded:implicit-reward"  # the demo's recorded training run's score-pairs rows


def _judge_page():
    from prefkit.annotate.app.pages import judge

    judge.page()


def _review_page():
    from prefkit.annotate.app.pages import review

    review.page()


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """A copy of the bundled demo store (the page only reads, but Review's board may write)."""
    root = tmp_path / "demo"
    shutil.copytree(ROOT / "data" / "demo", root)
    monkeypatch.setenv("PREFKIT_STORE", str(root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)  # open mode: the local user is an admin
    return Store(root)


def judge_eval_json(store: Store, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["judge-eval", "--store", str(store.root), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def chart_data(at: AppTest, key: str) -> list[pd.DataFrame]:
    """The data sets of the Vega-Lite chart in the container keyed chart-<key>."""
    boxes = [el for el in _walk(at.main) if str(getattr(el.proto, "id", "")).endswith(f"-chart-{key}")]
    assert len(boxes) == 1, key
    (chart,) = [el for el in _walk(boxes[0]) if getattr(el, "type", None) == "vega_lite_chart"]
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    return at


def the_judge(rows: list[dict]) -> dict:
    """judge-eval's figures for the demo's AI judge (the store's other AI annotator is a recorded run)."""
    assert {r["judge"] for r in rows} == {JUDGE, RECORDED}
    return next(r for r in rows if r["judge"] == JUDGE)


def test_the_page_draws_the_judge_eval_figures_of_the_demo(demo, capsys):
    want = the_judge(judge_eval_json(demo, capsys))
    at = _run(AppTest.from_function(_judge_page, default_timeout=90))
    at.selectbox(key="judge_pick").select(JUDGE)
    _run(at)
    assert any(c.value == JUDGE for c in at.code)

    # the confusion matrix: nine cells, each judge-eval's count
    (cells,) = [d for d in chart_data(at, "judge-confusion") if "comparisons" in d.columns]
    shown = {"lo": "A", "hi": "B", "tie": "tie"}
    assert len(cells) == 9 and cells.comparisons.sum() == want["comparisons"] > 0
    for v, row in want["confusion"].items():
        for h, n in row.items():
            assert cells[(cells.judge == shown[v]) & (cells.people == shown[h])].comparisons.item() == n

    # the reliability diagram: judge-eval's non-empty bins, and the diagonal
    data = chart_data(at, "judge-reliability")
    (bins,) = [d for d in data if "observed" in d.columns]
    full = [b for b in want["reliability"] if b["count"]]
    assert len(bins) == len(full) >= 3 and bins["count"].sum() == want["calibrated"]
    for got, b in zip(bins.to_dict("records"), full, strict=True):
        assert got == pytest.approx(b, abs=1e-12)
    assert any(len(d) == 2 and set(d.columns) == {"x", "y"} for d in data)
    assert chart_data(at, "judge-bias")[0]["value"].notna().all()

    # the figures table and the metric cards: the same numbers
    (table,) = [t.value for t in at.dataframe if "ci_low" in t.value.columns]
    for row in table.itertuples():
        if want[row.key] is None:
            assert pd.isna(row.value), row.key
        else:
            assert row.value == pytest.approx(want[row.key], abs=1e-12), row.key
    ci = table.set_index("key")
    assert [ci.loc["accuracy", "ci_low"], ci.loc["accuracy", "ci_high"]] == pytest.approx(want["accuracy_ci"])
    assert [ci.loc["cohen_kappa", "ci_low"], ci.loc["cohen_kappa", "ci_high"]] == pytest.approx(want["cohen_kappa_ci"])
    cards = {m.label: m.value for m in at.metric}
    assert cards["ECE"] == f"{want['ece']:.3f}" and cards["Cohen's κ"] == f"{want['cohen_kappa']:.3f}"
    assert cards["agreement"] == f"{want['accuracy']:.3f}"

    # the disagreements: a link to Review filtered to this judge
    links = [el for el in _walk(at.main) if getattr(el, "type", None) == "page_link"]
    assert len(want["disagreements"]) > 0
    (link,) = [el for el in links if f"{len(want['disagreements'])} disagreements" in el.proto.label]
    assert link.proto.query_string == f"ai={JUDGE}".replace(":", "%3A")


def test_review_filtered_to_the_judge_lists_every_disagreement(demo, capsys):
    want = the_judge(judge_eval_json(demo, capsys))
    con = demo.connect()
    df = metrics.load_pairwise(con)
    con.close()
    queue = metrics.review_queue(df, ai=JUDGE)
    keys = {"|".join(["pairwise", *d]) for d in want["disagreements"]}
    assert keys and keys <= set(queue.item)  # each of judge-eval's disagreements is in the filtered queue
    at = AppTest.from_function(_review_page, default_timeout=90)
    at.query_params["ai"] = JUDGE
    _run(at)
    assert any(c.value == f"{len(queue)} items to settle" for c in at.caption)
    assert any(c.value == JUDGE for c in at.code)


def test_every_judge_has_its_figures(demo, capsys):
    """A second judge (the demo judge's rows, verdicts swapped): the page offers both, and each shows
    its own figures."""
    rows = demo.read("judgements", "annotator = ? AND status = 'submitted'", [JUDGE]).to_pylist()
    for r in rows:
        r["annotator"], r["judgement_id"] = "ai:contrarian:pairwise", "contrarian-" + r["judgement_id"]
        r["scores"] = r["scores"][::-1]
        r["confidence"] = 1 - r["confidence"]
    demo.append("judgements", rows)
    want = {r["judge"]: r for r in judge_eval_json(demo, capsys)}
    assert set(want) == {JUDGE, "ai:contrarian:pairwise", RECORDED}
    at = _run(AppTest.from_function(_judge_page, default_timeout=90))
    for name in sorted(want):
        at.selectbox(key="judge_pick").select(name)
        _run(at)
        cards = {m.label: m.value for m in at.metric}
        assert cards["agreement"] == f"{want[name]['accuracy']:.3f}", name
        (bins,) = [d for d in chart_data(at, "judge-reliability") if "observed" in d.columns]
        assert bins["count"].sum() == want[name]["calibrated"]
    assert want["ai:contrarian:pairwise"]["accuracy"] < want[JUDGE]["accuracy"]
    assert want[JUDGE]["calibrated"] == want["ai:contrarian:pairwise"]["calibrated"]


def test_a_store_without_ai_judges_says_how_to_get_one(tmp_path, monkeypatch):
    store = make_store(tmp_path / "store", n_prompts=3)
    monkeypatch.setenv("PREFKIT_STORE", str(store.root))
    monkeypatch.delenv("PREFKIT_PROJECT", raising=False)
    at = _run(AppTest.from_function(_judge_page, default_timeout=60))
    assert any("prefkit judge" in i.value for i in at.info)


def test_annotators_may_not_see_it(demo, tmp_path, monkeypatch):
    from tests.annotate.app.conftest import password_hash

    f = tmp_path / "project.yaml"
    f.write_text(json.dumps({"name": "t", "users": [{"login": "alice", "password_hash": password_hash("pw")}]}))
    monkeypatch.setenv("PREFKIT_PROJECT", str(f))
    at = AppTest.from_function(_judge_page, default_timeout=60)
    at.session_state["_authenticated_login"] = "alice"
    _run(at)
    assert any("Reviewers and admins only" in e.value for e in at.error) and not at.metric


def test_the_judge_asked_in_both_orders_is_shown_first(demo):
    """The demo also holds a trained model's score-pairs verdicts (one order): the page opens on the
    real judge, not on whichever name sorts first."""
    assert RECORDED < JUDGE  # by name the recorded run would come first
    at = _run(AppTest.from_function(_judge_page, default_timeout=90))
    assert at.selectbox(key="judge_pick").value == JUDGE
    assert any(c.value == JUDGE for c in at.code)
