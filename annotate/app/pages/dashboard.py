"""Dashboard: queue progress and when it finishes, labels over time per person, time on task against
the fast-answer threshold, agreement (percent, Cohen's κ between every two raters as a heatmap,
Fleiss' κ, Krippendorff's α, per task and aspect), gold accuracy over time, and position and length
bias per person and per AI judge. Every figure comes from `metrics`; this page only draws them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st
from prefkit.annotate.app import metrics
from prefkit.annotate.app.ui import board as get_board
from prefkit.annotate.app.ui import keyed_chart, page_user, reload_board, store_path
from prefkit.annotate.store import Store

RECENT = 50  # answers the finishing estimate's rate is measured over


def _read(store: str, load) -> pd.DataFrame:
    con = Store(store).connect()
    try:
        return load(con)
    finally:
        con.close()


@st.cache_data(ttl=30, show_spinner="Reading judgements…")
def _pairwise(store: str) -> pd.DataFrame:
    return _read(store, metrics.load_pairwise)


@st.cache_data(ttl=30, show_spinner=False)
def _activity(store: str) -> pd.DataFrame:
    return _read(store, metrics.load_activity)


@st.cache_data(ttl=30, show_spinner=False)
def _task_labels(store: str) -> pd.DataFrame:
    return _read(store, metrics.load_task_labels)


def _fmt(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.2f}"


def _shown(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A table with its undefined figures as "—" (docs/annotating.md)."""
    out = frame.copy()
    for c in columns:
        out[c] = out[c].map(_fmt)
    return out


def page() -> None:
    page_user(lambda u: u.can_review, "Reviewers and admins only.")
    st.title("Dashboard")
    b = get_board()
    if st.button("Reload the store", help="after an import or an AI job, rebuild the app's index", key="reload"):
        reload_board()
        for cached in (_pairwise, _activity, _task_labels):
            cached.clear()
        st.rerun()
    store = store_path()
    activity = _activity(store)
    _progress(b, activity)
    _labelling(activity, b.project.min_seconds)
    df = _pairwise(store)
    _agreement(df, _task_labels(store))
    _gold(df)
    _biases(df)


def _progress(b, activity: pd.DataFrame) -> None:
    st.subheader("Progress")
    rows = []
    for task in b.project.tasks:
        p = b.index.progress("", task.kind)
        rows.append(
            {
                "task": task.kind,
                "items": p.items,
                "k": task.overlap,
                "judgements": p.filled,
                "needed": p.needed,
                "done %": round(100 * p.filled / p.needed, 1) if p.needed else 100.0,
            }
        )
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    remaining = int((table.needed - table.judgements).sum()) if len(table) else 0
    answers = activity[activity.status.isin(metrics.ANSWERED)]
    rate = metrics.labelling_rate(answers.created_at, RECENT)
    left = metrics.hours_left(remaining, rate)
    c = st.columns(3)
    c[0].metric("judgements still needed", f"{remaining:,}")
    c[1].metric("recent rate (answers per hour)", _fmt(rate))
    if left is None:
        c[2].metric("estimated finish", "—", help="needs two answers some time apart to measure a rate")
    else:
        finish = datetime.now(UTC) + timedelta(hours=left)
        c[2].metric(
            "estimated finish",
            "done" if remaining == 0 else f"{left:.1f} h",
            help=f"around {finish:%Y-%m-%d %H:%M} UTC",
        )
    st.caption(
        f"The estimate divides the judgements still needed by the rate of the last {RECENT} answers (how many "
        "came in per hour between the first and the last of them), counted from now: it assumes people go on "
        "labelling at that pace."
    )
    if len(table):
        long = table.assign(remaining=table.needed - table.judgements).melt(
            id_vars="task", value_vars=["judgements", "remaining"], var_name="part", value_name="n"
        )
        keyed_chart(
            "progress",
            alt.Chart(long)
            .mark_bar()
            .encode(
                y=alt.Y("task:N", title=None),
                x=alt.X("n:Q", stack="zero", title="judgements (k per item)"),
                color=alt.Color("part:N", scale=alt.Scale(domain=["judgements", "remaining"]), title=None),
                tooltip=["task", "part", "n"],
            ),
        )


def _labelling(activity: pd.DataFrame, min_seconds: float) -> None:
    st.subheader("Labelling")
    if activity.empty:
        st.info("No labels from people in the app yet.")
        return
    st.dataframe(
        _shown(metrics.per_person_activity(activity, min_seconds), ["under_threshold", "median_seconds"]),
        hide_index=True,
    )
    over_time = metrics.labels_over_time(activity)
    if len(over_time):
        st.caption("Labels over time, per person (running count of answers; skips left out)")
        keyed_chart(
            "labels-over-time",
            alt.Chart(over_time)
            .mark_line(interpolate="step-after", point=True)
            .encode(
                x=alt.X("created_at:T", title="time (UTC)"),
                y=alt.Y("labels:Q", title="answers so far"),
                color=alt.Color("annotator:N"),
                tooltip=["annotator", "created_at", "labels"],
            ),
        )
    secs = metrics.seconds_on_task(activity)
    if len(secs):
        cap = float(max(secs.seconds.quantile(0.99), min_seconds * 2))
        shown = secs.assign(seconds=secs.seconds.clip(upper=cap))
        st.caption(
            f"Time on task per answer; the red line is the fast-answer threshold ({min_seconds:g} s: faster answers "
            f"are stored as flagged). Answers over {cap:.0f} s are drawn at {cap:.0f} s."
        )
        bars = (
            alt.Chart(shown)
            .mark_bar()
            .encode(
                x=alt.X("seconds:Q", bin=alt.Bin(maxbins=40), title="seconds on the item"),
                y=alt.Y("count():Q", title="answers"),
                color=alt.Color("annotator:N"),
                tooltip=["annotator", "count()"],
            )
        )
        rule = (
            alt.Chart(pd.DataFrame({"seconds": [min_seconds]}))
            .mark_rule(color="red", strokeWidth=2)
            .encode(x="seconds:Q")
        )
        keyed_chart("time-on-task", bars + rule)


def _agreement(df: pd.DataFrame, task_labels: pd.DataFrame) -> None:
    humans = df[df.annotator_type.isin(metrics.HUMAN)]
    st.subheader("Agreement (pairwise, people: labelled here or imported)")
    if humans.empty:
        st.info("No pairwise human judgements yet.")
        return
    c = st.columns(4)
    # an undefined figure shows "—" and, on hover, why (docs/annotating.md)
    plain, corrected = metrics.undefined_reason(humans, False), metrics.undefined_reason(humans)
    c[0].metric("percent agreement", _fmt(metrics.percent_agreement(humans)), help=plain)
    c[1].metric("Fleiss' κ", _fmt(metrics.fleiss_kappa(humans)), help=corrected)
    c[2].metric("Krippendorff's α", _fmt(metrics.krippendorff_alpha(humans)), help=corrected)
    hva, n = metrics.human_vs_ai(df)
    c[3].metric(f"human vs AI ({n} items)", _fmt(hva))
    per = metrics.per_annotator(humans)
    st.dataframe(per, hide_index=True)
    st.caption("agreement and mean Cohen's κ with colleagues on shared items; gold accuracy on gold items")

    matrix = metrics.kappa_matrix(df)
    if len(matrix):
        st.caption(
            "Cohen's κ between every two raters (people and AI judges) on the pairs both judged; — where it is "
            "undefined (no shared pair, or one label throughout). An AI judge's two orders count as one verdict."
        )
        cells = matrix.assign(text=matrix.kappa.map(_fmt))
        base = alt.Chart(cells).encode(x=alt.X("a:N", title=None, sort=None), y=alt.Y("b:N", title=None, sort=None))
        heat = base.mark_rect().encode(
            color=alt.Color("kappa:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue"), title="κ"),
            tooltip=["a", "b", "items", "text", "agreement"],
        )
        keyed_chart(
            "kappa-matrix",
            (
                heat
                + base.mark_text(fontSize=11).encode(
                    text="text:N",
                    # light text on the strong colours at either end of the scale
                    color=alt.condition("abs(datum.kappa) > 0.5", alt.value("white"), alt.value("black")),
                )
            ).properties(height=60 + 32 * cells.a.nunique()),
        )
        with st.expander("κ between every two raters (table)"):
            st.dataframe(_shown(matrix.query("a < b"), ["kappa", "agreement"]), hide_index=True, key="kappa-table")

    by_task = metrics.agreement_by_task(task_labels)
    if len(by_task):
        st.caption("Agreement per task and aspect (people; each item's labels in the order-free form)")
        st.dataframe(
            _shown(by_task, ["percent_agreement", "fleiss_kappa", "krippendorff_alpha"]), hide_index=True, key="by-task"
        )
        drawn = by_task.melt(
            id_vars=["task", "aspect"], value_vars=["percent_agreement", "fleiss_kappa"], var_name="figure"
        ).dropna(subset=["value"])
        drawn["task / aspect"] = drawn.task + " / " + drawn.aspect
        if len(drawn):
            keyed_chart(
                "agreement-by-task",
                alt.Chart(drawn)
                .mark_bar()
                .encode(
                    y=alt.Y("task / aspect:N", title=None),
                    x=alt.X("value:Q", scale=alt.Scale(domain=[-1, 1]), title=None),
                    color=alt.Color("figure:N", title=None),
                    yOffset="figure:N",
                    tooltip=["task", "aspect", "figure", alt.Tooltip("value:Q", format=".2f")],
                ),
            )


def _gold(df: pd.DataFrame) -> None:
    gold = metrics.gold_over_time(df)
    st.subheader("Gold accuracy")
    if gold.empty:
        st.info("No gold items answered yet (a project's gold_rate serves them; docs/annotating.md).")
        return
    st.caption("Per person, the share of gold items answered correctly so far")
    keyed_chart(
        "gold-over-time",
        alt.Chart(gold)
        .mark_line(point=True)
        .encode(
            x=alt.X("created_at:T", title="time (UTC)"),
            y=alt.Y("gold_accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="gold accuracy so far"),
            color=alt.Color("annotator:N"),
            tooltip=["annotator", "created_at", "gold_items", alt.Tooltip("gold_accuracy:Q", format=".2f")],
        ),
    )


def _biases(df: pd.DataFrame) -> None:
    humans = df[df.annotator_type.isin(metrics.HUMAN)]
    st.subheader("Biases")
    c = st.columns(2)
    c[0].metric("left response wins", _fmt(metrics.share(humans["left_won"])), help="0.50 = no position bias")
    c[1].metric("longer response wins", _fmt(metrics.share(humans["longer_won"])), help="0.50 = no length bias")
    bias = metrics.bias_per_rater(df)
    if bias.empty:
        return
    st.dataframe(_shown(bias, ["first_shown_won", "longer_won"]), hide_index=True, key="bias-table")
    drawn = bias.melt(
        id_vars=["annotator", "type"], value_vars=["first_shown_won", "longer_won"], var_name="bias"
    ).dropna(subset=["value"])
    if len(drawn):
        st.caption(
            "Per person and per AI judge: how often the response shown first won, and the longer one (0.5 = none)"
        )
        bars = (
            alt.Chart(drawn)
            .mark_bar()
            .encode(
                y=alt.Y("annotator:N", title=None),
                x=alt.X("value:Q", scale=alt.Scale(domain=[0, 1]), title="share of decisive verdicts"),
                color=alt.Color("bias:N", title=None),
                yOffset="bias:N",
                tooltip=["annotator", "type", "bias", alt.Tooltip("value:Q", format=".2f")],
            )
        )
        half = alt.Chart(pd.DataFrame({"value": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(x="value:Q")
        keyed_chart("bias", bars + half)
