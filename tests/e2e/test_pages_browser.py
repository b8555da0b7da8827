"""Every page of a fresh `prefkit app --demo` (what `make app` runs) in Debian's headless Chromium:
each renders with no exception and no console error, each chart is drawn with data, Review lists a
disagreement, and the Training runs page links a trained model's disputed pairs to Review. A
screenshot of each page is saved under the test's temporary folder.

The demo is served from a fresh folder with nothing prepared, so its working copies of the bundled
store and of the bundled recorded training run (data/demo-source/recorded-run: one real `prefkit
demo` run's metrics.jsonl, its `prefkit score-pairs` rows are in the demo store) are new.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from prefkit.annotate.app.learn import read_metrics
from prefkit.annotate.app.serve import DEMO_COPY, DEMO_RUNS_COPY, RECORDED_RUNS
from prefkit.annotate.store import Store

from tests.support.browser import chromium, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # one app server and one Chromium for the module

DASHBOARD_CHARTS = [
    "progress",
    "labels-over-time",
    "time-on-task",
    "kappa-matrix",
    "agreement-by-task",
    "gold-over-time",
    "bias",
]
RUN_CHARTS = ["run-loss", "run-rewards-margins", "run-rewards-accuracies"]
RUN = "dpo-recorded"  # the bundled recorded run's folder

# A chart's data marks, as Vega draws them: with the SVG renderer, the shapes under the groups of
# role `mark` (axes, grid lines and legends have roles of their own, so a chart with no data has
# none); with the canvas renderer, the pixels drawn in colour (axes and labels are grey).
DATA_MARKS_JS = """(el) => {
  const svg = el.querySelector('svg.marks');
  if (svg) {
    const out = {};
    for (const g of svg.querySelectorAll('g.role-mark')) {
      const kind = [...g.classList].find(c => c.startsWith('mark-'));
      out[kind] = (out[kind] || 0) + g.children.length;
    }
    return out;
  }
  const c = el.querySelector('canvas');
  if (!c || !c.width) return {};
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
    if (d[i + 3] > 0 && hi - lo > 60) n++;
  }
  return {coloured_pixels: n};
}"""


def _recorded() -> tuple[int, int]:
    """(logged steps, lines per curve) of the bundled recorded run, read with the page's own reader."""
    rows, _ = read_metrics(RECORDED_RUNS / RUN / "metrics.jsonl")
    return len(rows), 1 + any("eval/loss" in r for r in rows)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("make-app")  # nothing prepared: what a new user's checkout holds
    with serve_app(None, extra=("--demo",), cwd=home) as url, chromium() as browser:
        copy = home / DEMO_COPY  # the copy of the bundled store `prefkit app --demo` made and serves
        scored = Store(copy).read("judgements", "annotator = ?", [f"ai:{RUN}:implicit-reward"]).to_pylist()
        assert scored and (home / DEMO_RUNS_COPY / RUN / "metrics.jsonl").is_file()
        yield url, browser, scored, copy


def _open(browser, url: str, nav: str | None = None):
    """The app's front page, then the page named `nav` in the sidebar, as a user gets there (a deep
    link makes Streamlit probe <page>/_stcore/health first, a 404 in the console), once it has
    finished running; console errors, page errors and failed requests are collected."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url)
    page.locator("[data-testid=stMainBlockContainer]").first.wait_for(timeout=60_000)
    _settle(page)
    if nav:
        page.locator("[data-testid=stSidebarNav] a").filter(has_text=nav).first.click()
        page.locator("h1").filter(has_text=nav).first.wait_for(timeout=60_000)
        _settle(page)
    return page, problems


def _settle(page) -> None:
    """Wait until the script has stopped running (Streamlit's status widget gone) and charts drew."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000, polling=250)
    page.wait_for_timeout(1500)


def _shoot(page, path: Path) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main area, so the window is made
    as tall as that area's content first."""
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height, 1000), 12000)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)


def _finish(page, problems: list[str], shots: Path, name: str) -> None:
    _shoot(page, shots / f"{name}.png")
    assert page.locator("[data-testid=stException]").count() == 0, name
    assert "This app has encountered an error" not in page.locator("body").inner_text(), name
    assert problems == [], (name, problems)
    page.close()


def _drawn(page, key: str) -> dict[str, int]:
    """The data marks of the chart in the container keyed chart-<key>, once Vega has drawn it."""
    box = page.locator(f".st-key-chart-{key}")
    box.scroll_into_view_if_needed()
    box.locator("svg.marks, canvas").first.wait_for(timeout=30_000)
    page.wait_for_timeout(300)
    return box.evaluate(DATA_MARKS_JS)


@pytest.mark.parametrize("nav, name", [(None, "annotate"), ("DPO loss explorer", "dpo-explorer")])
def test_the_labelling_pages_render(demo, tmp_path, nav, name):
    url, browser, _, _ = demo
    page, problems = _open(browser, url, nav)
    if nav is None:
        page.locator("[class*=st-key-item-]").first.wait_for(timeout=30_000)  # an item to label
    _finish(page, problems, tmp_path, name)


def test_the_dashboard_draws_every_chart_with_data(demo, tmp_path):
    url, browser, _, store = demo
    page, problems = _open(browser, url, "Dashboard")
    drawn = {key: _drawn(page, key) for key in DASHBOARD_CHARTS}
    assert all(sum(marks.values()) > 0 for marks in drawn.values()), drawn
    # the heatmap has a cell for every two raters `prefkit stats --json` gives κ for (and each with itself)
    out = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "stats", "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = len(json.loads(out.stdout)["team"]["cohen_kappa"])
    raters = round((1 + math.sqrt(1 + 8 * pairs)) / 2)
    assert raters * (raters - 1) // 2 == pairs and raters >= 3
    assert drawn["kappa-matrix"].get("mark-rect") == raters * raters, drawn["kappa-matrix"]
    assert "estimated finish" in page.locator("body").inner_text()
    _finish(page, problems, tmp_path, "dashboard")


def test_review_lists_a_disagreement(demo, tmp_path):
    url, browser, _, _ = demo
    page, problems = _open(browser, url, "Review")
    text = page.locator("body").inner_text()
    assert "Nothing to review" not in text
    n = int(text.split(" items to settle")[0].split()[-1])
    assert n >= 1
    assert "Why:" in text and ("humans disagree" in text or "differs from" in text)
    _finish(page, problems, tmp_path, "review")


def test_training_runs_show_the_recorded_run_and_link_disputed_pairs_to_review(demo, tmp_path):
    url, browser, scored, _ = demo
    steps, lines = _recorded()
    page, problems = _open(browser, url, "Training runs")
    text = page.locator("body").inner_text()
    assert f"{RUN}: {steps} logged steps" in text and DEMO_RUNS_COPY.name in text
    drawn = {key: _drawn(page, key) for key in RUN_CHARTS}
    assert all(sum(marks.values()) > 0 for marks in drawn.values()), drawn
    assert drawn["run-loss"].get("mark-line") == lines  # the run's train line, and its eval line if logged
    disputed = sum(json.loads(r["metadata"])["margin"] < 0 for r in scored)
    assert disputed >= 1
    assert f"{len(scored)} pairs scored, {disputed} with a negative implicit reward margin" in text
    _shoot(page, tmp_path / "training-runs.png")
    page.get_by_role("link", name=f"Review the pairs {RUN} disputes").click()
    page.get_by_text("Only the pairs where this AI annotator and people disagree").wait_for(timeout=30_000)
    _settle(page)
    assert f"ai:{RUN}:implicit-reward" in page.locator("[data-testid=stCode]").inner_text()
    review = page.locator("body").inner_text()
    n = int(review.split(" items to settle")[0].split()[-1])
    assert 1 <= n <= len(scored)  # only pairs the run scored, where it and people disagree
    _finish(page, problems, tmp_path, "review-disputed")


def _judges(store: Path) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "prefkit.cli", "judge-eval", "--json", "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_judge_page_draws_its_confusion_matrix_and_reliability_diagram(demo, tmp_path):
    url, browser, _, store = demo
    judge = next(r for r in _judges(store) if r["judge"] != f"ai:{RUN}:implicit-reward" and r["reliability"])
    page, problems = _open(browser, url, "AI judges")
    if page.locator(".st-key-judge_pick").count():  # several AI annotators: pick the demo's judge
        page.locator(".st-key-judge_pick").click()
        page.get_by_role("option", name=judge["judge"]).click()
        page.locator("[data-testid=stCode]").filter(has_text=judge["judge"]).wait_for(timeout=30_000)
        _settle(page)
    confusion = _drawn(page, "judge-confusion")
    assert confusion.get("mark-rect") == 9, confusion  # judge × human majority over A, B, tie
    reliability = _drawn(page, "judge-reliability")
    bins = sum(1 for b in judge["reliability"] if b["count"])
    assert reliability.get("mark-circle", reliability.get("mark-symbol", 0)) >= bins > 0, reliability
    assert sum(_drawn(page, "judge-bias").values()) > 0
    _finish(page, problems, tmp_path, "judge")
