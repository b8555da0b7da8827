"""Judge: each AI judge in the store against the people who judged the same pairs.

The figures are `prefkit judge-eval`'s (`prefkit.annotate.ai.evaluate`, the one implementation), drawn:
agreement with the human majority and Cohen's κ with their 95 % intervals (analytic: Wilson for the
share, the large-sample standard error for κ), the confusion matrix of verdicts against the human
majority, position consistency over both orders, length bias, and a reliability diagram of the
judge's first-token confidence against what people preferred, with its expected calibration error
(10 equal-width bins weighted by count). The pairs where judge and people disagree are one link from
the Review queue.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
from prefkit.annotate.ai.engine import AIError
from prefkit.annotate.ai.evaluate import LABELS, evaluate_judges
from prefkit.annotate.app.pages import review
from prefkit.annotate.app.ui import keyed_chart, page_user, store_path
from prefkit.annotate.store import Store

# judge-eval's frame names a pair's responses by id order; Review shows them as A and B in that order
SHOWN = {"lo": "A", "hi": "B", "tie": "tie"}
FIGURES = [  # (JSON key, row label) of the summary table
    ("comparisons", "comparisons judged by the AI and by people"),
    ("accuracy", "agreement with the human majority"),
    ("accuracy_decisive", "agreement where people did not call a tie"),
    ("cohen_kappa", "Cohen's κ"),
    ("position_consistency", "same verdict in both orders"),
    ("first_position_rate", "first-shown response wins (decisive verdicts)"),
    ("judge_longer_rate", "longer response wins: judge"),
    ("human_longer_rate", "longer response wins: people"),
    ("ece", "expected calibration error"),
    ("calibrated", "verdicts with a confidence, on decisive majorities"),
]


@st.cache_data(ttl=30, show_spinner="Comparing the AI judges with people…")
def evaluations(store: str) -> list[dict]:
    """`prefkit judge-eval --json` for every AI pairwise judge in the store (empty: none there)."""
    try:
        return [r.as_dict() for r in evaluate_judges(Store(store))]
    except AIError:
        return []


def _fmt(x) -> str:
    return "—" if x is None else str(x) if isinstance(x, int) else f"{x:.3f}"


def summary(result: dict) -> pd.DataFrame:
    """One row per figure: its value and, where judge-eval gives one, the 95 % interval."""
    ci = {"accuracy": result["accuracy_ci"], "cohen_kappa": result["cohen_kappa_ci"]}
    rows = []
    for key, label in FIGURES:
        low, high = ci.get(key) or (None, None)
        rows.append({"figure": label, "key": key, "value": result[key], "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def confusion_frame(result: dict) -> pd.DataFrame:
    rows = [
        {"judge": SHOWN[v], "people": SHOWN[h], "comparisons": result["confusion"][v][h]}
        for v in LABELS
        for h in LABELS
    ]
    return pd.DataFrame(rows)


def reliability_frame(result: dict) -> pd.DataFrame:
    """The non-empty bins of the reliability table."""
    bins = [b for b in result["reliability"] if b["count"]]
    return pd.DataFrame(bins, columns=["low", "high", "count", "confidence", "observed"])


def page() -> None:
    page_user(lambda u: u.can_review, "Reviewers and admins only.")
    st.title("AI judges")
    results = evaluations(store_path())
    if st.button("Reload", help="after `prefkit judge` or new labels, compute again", key="judge_reload"):
        evaluations.clear()
        st.rerun()
    if not results:
        st.info("No AI pairwise judgements in this store yet: run `prefkit judge` (docs/ai-labelling.md).")
        return
    # The judge asked in both orders about the most comparisons first: a real judge before, say, a
    # trained model's score-pairs verdicts (one order, a few dozen pairs).
    results = sorted(results, key=lambda r: (-r["both_orders"], -r["comparisons"], r["judge"]))
    names = [r["judge"] for r in results]
    name = st.selectbox("Judge", names, key="judge_pick") if len(names) > 1 else names[0]
    result = results[names.index(name)]
    st.code(name, language=None)  # an annotator name from the store: shown as code, never as Markdown
    st.caption(
        f"{result['comparisons']} comparisons judged by this judge and by people "
        f"(people judged {result['human_pairs']}); the same figures as `prefkit judge-eval --json`"
    )
    c = st.columns(4)
    c[0].metric("agreement", _fmt(result["accuracy"]), help=_interval(result["accuracy_ci"]))
    c[1].metric("Cohen's κ", _fmt(result["cohen_kappa"]), help=_interval(result["cohen_kappa_ci"]))
    c[2].metric("position consistency", _fmt(result["position_consistency"]), help="same verdict in both orders")
    c[3].metric("ECE", _fmt(result["ece"]), help="expected calibration error, 10 equal-width bins weighted by count")
    st.dataframe(summary(result), hide_index=True, key="judge_figures")

    left, right = st.columns(2)
    with left:
        st.subheader("Verdicts against the human majority")
        _confusion(result)
    with right:
        st.subheader("Reliability of its confidence")
        _reliability(result)
    st.subheader("Biases")
    _biases(result)

    st.subheader("Where the judge and people disagree")
    n = len(result["disagreements"])
    st.caption(
        f"{n} comparisons where the judge's verdict (both orders combined) differs from the human majority. "
        "Review lists them, and the items people split on, filtered to this judge."
    )
    if n:
        review.link(f"Review the {n} disagreements", ai=name)


def _interval(ci: list[float] | None) -> str:
    return "95% interval: —" if not ci else f"95% interval {ci[0]:.3f} to {ci[1]:.3f}"


def _confusion(result: dict) -> None:
    cells = confusion_frame(result)
    order = list(SHOWN.values())
    base = alt.Chart(cells).encode(
        x=alt.X("people:N", sort=order, title="human majority"),
        y=alt.Y("judge:N", sort=order, title="judge's verdict"),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("comparisons:Q", scale=alt.Scale(scheme="blues"), title="comparisons"),
        tooltip=["judge", "people", "comparisons"],
    )
    keyed_chart("judge-confusion", heat + base.mark_text().encode(text="comparisons:Q"))
    st.caption("A and B: the pair's responses in id order, as Review shows them; the diagonal is agreement.")


def _reliability(result: dict) -> None:
    bins = reliability_frame(result)
    if bins.empty:
        st.info("No verdict with a confidence on a comparison people decided: judge in logprobs mode.")
        return
    diagonal = (
        alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}))
        .mark_line(strokeDash=[4, 4])
        .encode(x="x:Q", y="y:Q")
    )
    points = (
        alt.Chart(bins)
        .mark_line(point=True)
        .encode(
            x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="judge's P(first shown is better)"),
            y=alt.Y("observed:Q", scale=alt.Scale(domain=[0, 1]), title="share where people preferred it"),
            tooltip=["low", "high", "count", alt.Tooltip("confidence:Q", format=".3f"), "observed"],
        )
    )
    sizes = alt.Chart(bins).mark_circle().encode(x="confidence:Q", y="observed:Q", size=alt.Size("count:Q"))
    keyed_chart("judge-reliability", diagonal + points + sizes)
    st.caption(
        f"ECE {_fmt(result['ece'])} over {result['calibrated']} verdicts (each order on its own; comparisons "
        "people called a tie are left out); 10 equal-width bins, weighted by count; on the dashed line it is 0."
    )


def _biases(result: dict) -> None:
    rows = [
        ("judge", "first shown wins", result["first_position_rate"]),
        ("judge", "longer wins", result["judge_longer_rate"]),
        ("people", "longer wins", result["human_longer_rate"]),
    ]
    drawn = pd.DataFrame([r for r in rows if r[2] is not None], columns=["who", "bias", "value"])
    if drawn.empty:
        st.info("No decisive verdict to count yet.")
        return
    bars = (
        alt.Chart(drawn)
        .mark_bar()
        .encode(
            y=alt.Y("bias:N", title=None),
            yOffset="who:N",
            x=alt.X("value:Q", scale=alt.Scale(domain=[0, 1]), title="share of decisive verdicts"),
            color=alt.Color("who:N", title=None),
            tooltip=["who", "bias", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    half = alt.Chart(pd.DataFrame({"value": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(x="value:Q")
    keyed_chart("judge-bias", bars + half)
    st.caption(
        f"0.5 is no bias. Position consistency {_fmt(result['position_consistency'])} over "
        f"{result['both_orders']} comparisons judged in both orders."
    )
