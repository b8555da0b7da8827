"""report.html: every chart drawn, with the numbers recomputed here from the curated Parquet tables and
report.json (numpy.histogram for the bins), nothing fetched from outside, model text inert."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from prefkit.curate import charts, report
from prefkit.curate.pipeline import curate

from tests.curate.helpers import make_store, prompt, recipe, response, vote

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["<script>alert('x')</script>", '<img src=x onerror="alert(1)">']
# A recipe that drops rows on the demo store: the length-bias cap, a response-length limit.
STRICT = recipe(
    "votes",
    "binarise",
    "identical",
    "empty",
    "ties",
    {"length": {"max_response": 600}},
    {"length_bias": {"max_share": 0.5}},
    {"split": {"test_size": 0.2}},
    name="strict",
)


class Page(HTMLParser):
    """The page's charts: chart id → [(tag, attributes)] of the figures that carry a data-value; also
    every src/href, and the text of any element that would run or load something."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, list[tuple[str, dict]]] = {}
        self.links: list[str] = []
        self.active: list[str] = []
        self._chart: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag in ("script", "img", "iframe", "link", "object") or any(k.startswith("on") for k in a):
            self.active.append(tag)
        if tag == "svg":
            self._chart = a["data-chart"]
            self.charts[self._chart] = []
        elif self._chart is not None and "data-value" in a:
            self.charts[self._chart].append((tag, a))

    def handle_endtag(self, tag):
        if tag == "svg":
            self._chart = None


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def values(page: Page, chart: str, key: str = "data-label") -> dict:
    return {a[key]: float(a["data-value"]) for _, a in page.charts[chart]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    store = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(ROOT / "data" / "demo", store)
    return curate(store, STRICT, "strict")


def test_every_chart_is_drawn_from_the_curated_figures(demo):
    rep = json.loads(demo.report_json.read_text(encoding="utf-8"))
    page = parse(demo.report_html.read_text(encoding="utf-8"))
    pairs = pq.read_table(demo.tables["pairs"]).to_pandas()
    assert rep["drops"]["pairs"], "the strict recipe should drop pairs on the demo store"

    # The funnel: one stage per step of the pairs table, its rows after that step.
    steps = [s for s in rep["steps"] if s["table"] == "pairs"]
    drawn = [(a["data-label"], int(a["data-value"])) for _, a in page.charts["funnel-pairs"]]
    assert drawn == [(s["step"], s["out"]) for s in steps]
    assert drawn[-1][1] == len(pairs) == rep["outputs"]["pairs"]
    for before, after in zip(steps, steps[1:], strict=False):  # each step's output is the next one's input
        assert after["in"] == before["out"]

    # Drops by reason equal the rows the steps dropped under each code.
    by_code = Counter()
    for s in steps:
        by_code[s["reason"]] += s["dropped"] or 0
    assert values(page, "drops-pairs") == {code: n for code, n in by_code.items() if n}

    # Margin and agreement histograms: numpy over the curated table's columns, on the drawn bins.
    for column, lo, hi in (("margin", min(0.0, pairs.margin.min()), pairs.margin.max()), ("agreement", 0.0, 1.0)):
        bins = page.charts[column]
        lo_hi = [(float(a["data-lo"]), float(a["data-hi"])) for _, a in bins]
        counts, edges = np.histogram(pairs[column].dropna().to_numpy(), bins=10, range=(lo, hi if hi > lo else lo + 1))
        np.testing.assert_allclose([x for x, _ in lo_hi] + [lo_hi[-1][1]], edges, atol=1e-3)
        assert [int(a["data-value"]) for _, a in bins] == counts.tolist()
        assert rep["histograms"][column]["counts"] == counts.tolist()

    # Lengths after the cap: numpy over the curated texts on report.json's bins; before: a superset.
    dist = rep["length_distribution"]
    assert dist["before"]["edges"] == dist["after"]["edges"]
    edges = np.array(dist["after"]["edges"])
    for side in ("chosen", "rejected"):
        after = np.histogram(pairs[side].str.len().to_numpy(), bins=edges)[0].tolist()
        drawn_after = [int(a["data-value"]) for _, a in page.charts["lengths-after"] if a["data-series"] == side]
        drawn_before = [int(a["data-value"]) for _, a in page.charts["lengths-before"] if a["data-series"] == side]
        assert drawn_after == after == dist["after"][side]
        assert drawn_before == dist["before"][side]
        assert all(b >= a for b, a in zip(drawn_before, drawn_after, strict=True))
    cap = next(s for s in steps if s["step"] == "length_bias")
    first_listed = next(s for s in steps if s["step"] == "identical")  # "before" is taken just ahead of it
    assert dist["before"]["pairs"] == first_listed["in"]
    assert dist["after"]["pairs"] == cap["out"] == len(pairs)
    assert cap["dropped"] > 0
    longer = float(np.mean(pairs.chosen.str.len() > pairs.rejected.str.len()))
    assert longer <= 0.5 + 1e-9
    assert values(page, "length-bias")["after"] == pytest.approx(longer, abs=1e-3)

    # Contributions per source (kept pairs) and per annotator (the store's submitted human judgements).
    assert values(page, "sources") == {k: float(v) for k, v in Counter(pairs.source).items()}
    judgements = pq.read_table(ROOT / "data" / "demo" / "judgements").to_pandas()
    human = judgements[(judgements.status == "submitted") & (judgements.annotator_type != "ai")]
    assert values(page, "annotators") == {k: float(v) for k, v in Counter(human.annotator).items()}
    assert values(page, "outputs") == {t: float(n) for t, n in rep["outputs"].items()}


def test_the_page_loads_nothing_from_outside(demo):
    text = demo.report_html.read_text(encoding="utf-8")
    page = parse(text)
    assert page.links == [] and page.active == []
    assert "<script" not in text.lower()
    # The only URL is the SVG namespace, a name that is never fetched.
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_hostile_model_text_in_an_example_is_inert(tmp_path):
    p = prompt(HOSTILE[0] + " tell me a story")
    a, b = response(p, HOSTILE[0] + " once upon a time, long ago"), response(p, HOSTILE[1])
    q = prompt("a harmless question")
    c, d = response(q, "yes"), response(q, "no")
    store = make_store(tmp_path / "s", [p, q], [a, b, c, d], [vote(p, a, b, "a"), vote(q, c, d, "a")])
    res = curate(store, recipe("votes", "binarise", {"length": {"max_response": 10}}), "h")
    example = res.report["drops"]["pairs"]["length"]["examples"][0]
    assert HOSTILE[0] in example["chosen"] and example["rejected"] == HOSTILE[1]
    text = res.report_html.read_text(encoding="utf-8")
    page = parse(text)
    assert page.active == [] and page.links == []
    assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;" in text and "onerror=" in text  # shown, as text


def test_charts_escape_labels_and_draw_values():
    svg = charts.bars({"<b>x</b>": 3, "y": 1.5, "none": None}, "t <i>", "c")
    page = parse(svg)
    assert values(page, "c") == {"<b>x</b>": 3.0, "y": 1.5}
    assert "<b>" not in svg and "<i>" not in svg
    assert charts.bars({}, "t", "c") == "" and charts.funnel([], "t", "f") == ""
    assert charts.histogram([0, 1], {"s": []}, "t", "h") == ""


@pytest.mark.parametrize("seed", range(5))
def test_bin_counts_match_numpy(seed):
    rng = np.random.default_rng(seed)
    # Random values plus the edge cases: values on the edges, the top edge (closed), a constant.
    vals = np.concatenate([rng.normal(size=50), [0.0, 1.0]]) if seed < 4 else np.full(7, 2.5)
    h = report.histogram(vals.tolist())
    lo, hi = float(vals.min()), float(vals.max())
    counts, edges = np.histogram(vals, bins=10, range=(lo, hi) if hi > lo else (lo, lo + 1))
    assert h["counts"] == counts.tolist() and h["n"] == len(vals)
    np.testing.assert_allclose(h["edges"], edges, atol=1e-6)
    on_edges = report.bin_counts(edges.tolist(), edges.tolist())
    assert on_edges == np.histogram(edges, bins=edges)[0].tolist()


@pytest.mark.browser
def test_report_opens_offline_in_chromium_with_its_charts_drawn(demo, tmp_path):
    """Opened from file:// in Debian's headless Chromium: no request leaves the file (every request is
    recorded, and refused unless it is the report itself), and the funnel and the margin and agreement
    histograms are on screen with their bars drawn at the sizes of their numbers."""
    from tests.support.browser import chromium

    report = demo.report_html.resolve().as_uri()
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        requests: list[str] = []

        def record(route):
            requests.append(route.request.url)
            (route.continue_() if route.request.url == report else route.abort())

        context.route("**/*", record)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(report)
        page.wait_for_load_state("load")
        for chart in ("funnel-pairs", "margin", "agreement"):
            svg = page.locator(f"svg[data-chart={chart}]")
            svg.scroll_into_view_if_needed()
            assert svg.is_visible(), chart
            bars = svg.locator("[data-value]")
            sizes = bars.evaluate_all(
                "els => els.map(e => { const b = e.getBoundingClientRect();"
                " return [Number(e.getAttribute('data-value')), b.width, b.height]; })"
            )
            assert any(v > 0 for v, _, _ in sizes), chart
            for value, width, height in sizes:  # a bar with rows is drawn; larger numbers are not hidden
                assert (width > 0 and height > 0) or value == 0, (chart, value, width, height)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        context.close()
    assert requests == [report]
    assert errors == []
