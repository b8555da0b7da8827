"""Dashboard: progress, agreement (percent, Cohen's/Fleiss' κ, Krippendorff's α), gold accuracy,
human-vs-AI agreement, position and length bias."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from prefkit.annotate.app import metrics
from prefkit.annotate.app.ui import board as get_board
from prefkit.annotate.app.ui import page_user, reload_board, store_path
from prefkit.annotate.store import Store


@st.cache_data(ttl=30, show_spinner="Reading judgements…")
def _pairwise(store: str) -> pd.DataFrame:
    con = Store(store).connect()
    try:
        return metrics.load_pairwise(con)
    finally:
        con.close()


def _fmt(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.2f}"


def page() -> None:
    page_user(lambda u: u.can_review, "Reviewers and admins only.")
    st.title("Dashboard")
    b = get_board()
    if st.button("Reload the store", help="after an import or an AI job, rebuild the app's index", key="reload"):
        reload_board()
        _pairwise.clear()
        st.rerun()

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
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    mine = pd.DataFrame([{"annotator": a, "task": kind, "answered": n} for (a, kind), n in b.index.mine.items() if n])
    if len(mine):
        st.bar_chart(mine.pivot_table(index="annotator", columns="task", values="answered", fill_value=0))

    df = _pairwise(store_path())
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
    if per["agreement"].notna().any():
        st.bar_chart(per.set_index("annotator")[["agreement"]])

    st.subheader("Biases")
    c = st.columns(2)
    c[0].metric("left response wins", _fmt(metrics.share(humans["left_won"])), help="0.50 = no position bias")
    c[1].metric("longer response wins", _fmt(metrics.share(humans["longer_won"])), help="0.50 = no length bias")
    if per["left_won"].notna().any():
        st.caption("how often the left response wins, per annotator")
        st.bar_chart(per.set_index("annotator")[["left_won"]])
