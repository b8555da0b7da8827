"""On the bundled demo store (its team of annotators and its AI judge): the figures the Dashboard
shows equal what `prefkit stats --json` prints (and an AI judge's position bias, `prefkit
judge-eval --json`'s first-position rate), read from the page under Streamlit's AppTest and from the
commands run as a user runs them. The judge page against judge-eval: tests/annotate/app/test_judge_page.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.annotate.app.test_dashboard import CHARTS, chart_rows

ROOT = Path(__file__).resolve().parents[3]


def _prefkit(*args: str):
    out = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout)


def _fmt(x) -> str:
    return "—" if x is None else f"{x:.2f}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    store = tmp_path_factory.mktemp("demo") / "store"
    shutil.copytree(ROOT / "data" / "demo", store)
    return store


@pytest.fixture
def env(demo, monkeypatch):
    monkeypatch.setenv("PREFKIT_STORE", str(demo))
    monkeypatch.setenv("PREFKIT_PROJECT", str(ROOT / "data" / "demo-project.yaml"))  # open mode, as make app
    return demo


def _dashboard():
    from prefkit.annotate.app.pages import dashboard

    dashboard.page()


def _table(at: AppTest, columns: tuple[str, ...]):
    (frame,) = [t.value for t in at.dataframe if tuple(t.value.columns) == columns]
    return frame


def test_the_dashboard_shows_what_prefkit_stats_prints(env):
    team = _prefkit("stats", "--json", "--store", str(env))["team"]
    judges = {r["judge"]: r for r in _prefkit("judge-eval", "--json", "--store", str(env))}
    at = AppTest.from_function(_dashboard, default_timeout=120).run()
    assert not at.exception, at.exception
    for key in CHARTS:  # the demo has something for every chart
        rows = chart_rows(at, key)
        assert rows and min(rows) > 0, (key, rows)

    kappa = _table(at, ("a", "b", "items", "kappa", "agreement"))
    want = {(r["a"], r["b"]): r for r in team["cohen_kappa"]}
    assert len(kappa) == len(want) >= 10  # several annotators and a judge: every two of them
    for row in kappa.itertuples():
        assert (row.items, row.kappa) == (want[(row.a, row.b)]["items"], _fmt(want[(row.a, row.b)]["kappa"]))

    by_task = _table(at, ("task", "aspect", "items", "percent_agreement", "fleiss_kappa", "krippendorff_alpha"))
    want = {(r["task"], r["aspect"]): r for r in team["agreement_by_task"]}
    assert len(by_task) == len(want) > 1
    for row in by_task.itertuples():
        w = want[(row.task, row.aspect)]
        assert (row.items, row.fleiss_kappa, row.percent_agreement) == (
            w["items"],
            _fmt(w["fleiss_kappa"]),
            _fmt(w["percent_agreement"]),
        )

    bias = _table(at, ("annotator", "type", "decisive", "first_shown_won", "longer_won"))
    want = {r["annotator"]: r for r in team["bias"]}
    assert set(bias.annotator) == set(want) and set(judges) <= set(want)
    for row in bias.itertuples():
        assert (row.first_shown_won, row.longer_won) == (
            _fmt(want[row.annotator]["first_shown_won"]),
            _fmt(want[row.annotator]["longer_won"]),
        )
    # an AI judge's position bias on the dashboard is judge-eval's first-position rate
    for name, r in judges.items():
        assert want[name]["first_shown_won"] == pytest.approx(r["first_position_rate"], abs=1e-12)

    activity = _table(
        at, ("annotator", "answers", "skips", "flagged_fast", "under_threshold", "median_seconds")
    ).set_index("annotator")
    counts: dict[tuple[str, str], int] = {(r["annotator"], r["status"]): r["n"] for r in team["labels_per_person"]}
    for who, row in activity.iterrows():
        assert row.answers == counts.get((who, "submitted"), 0) + counts.get((who, "flagged"), 0)
        assert row.skips == counts.get((who, "skipped"), 0)
    assert activity.skips.sum() > 0 and activity.flagged_fast.sum() > 0  # the demo has both

    gold = {r["annotator"]: r for r in team["gold_accuracy"]}
    per = _table(
        at, ("annotator", "labels", "agreement", "cohen_kappa", "gold_accuracy", "gold_items", "left_won")
    ).set_index("annotator")
    assert gold
    for who, g in gold.items():
        assert per.loc[who, "gold_items"] == g["gold_items"]
        assert per.loc[who, "gold_accuracy"] == pytest.approx(g["gold_accuracy"], abs=1e-12)
