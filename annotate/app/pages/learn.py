"""Learn pages: the DPO loss explorer and a live view of a training run's metrics.jsonl (admins
only, and only inside the runs folder the app was given: it reads files on the server)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import streamlit as st
from prefkit.annotate.app.learn import RunPathError, dpo, metrics_path, read_metrics
from prefkit.annotate.app.ui import page_user, runs_root

RUN_SERIES = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"]


def dpo_page() -> None:
    st.title("DPO loss explorer")
    st.markdown(
        "DPO pushes up the log-probability ratio $\\log \\pi/\\pi_{ref}$ of the chosen response and down that "
        "of the rejected one. With $\\Delta$ = chosen ratio − rejected ratio, the loss is "
        "$-\\log\\sigma(\\beta\\Delta)$ and each pair's gradient is scaled by $\\sigma(-\\beta\\Delta)$."
    )
    beta = st.slider("β (how far the policy may move from the reference)", 0.01, 1.0, 0.1, 0.01, key="beta")
    c1, c2 = st.columns(2)
    with c1:
        chosen = st.slider("log π/π_ref of the chosen response", -20.0, 20.0, 2.0, 0.5, key="chosen")
    with c2:
        rejected = st.slider("log π/π_ref of the rejected response", -20.0, 20.0, -1.0, 0.5, key="rejected")
    out = dpo(beta, chosen, rejected)
    m = st.columns(4)
    m[0].metric("loss", f"{float(out['loss']):.4f}")
    m[1].metric("gradient weight σ(−βΔ)", f"{float(out['grad_weight']):.4f}")
    m[2].metric("reward chosen β·log π/π_ref", f"{float(out['reward_chosen']):.3f}")
    m[3].metric("reward rejected", f"{float(out['reward_rejected']):.3f}")
    deltas = np.linspace(-30, 30, 241)
    curve = dpo(beta, deltas, 0.0)
    st.caption("Loss and gradient weight against the margin Δ (at this β)")
    st.line_chart(pd.DataFrame({"Δ": deltas, "loss": curve["loss"], "gradient weight": curve["grad_weight"]}), x="Δ")


def run_page() -> None:
    page_user(lambda u: u.is_admin, "Admins only.")
    st.title("Training run")
    root = runs_root()
    run_dir = st.text_input(
        f"Run folder (holds metrics.jsonl), inside {root}", value=os.environ.get("PREFKIT_RUN_DIR", ""), key="run_dir"
    )
    if not run_dir:
        st.info("Give the folder of a `prefkit train` run; the charts follow metrics.jsonl as it grows.")
        return
    try:
        path = metrics_path(root, run_dir)
    except RunPathError as exc:
        st.error(str(exc))
        return
    _run_charts(str(path))


@st.fragment(run_every=3)
def _run_charts(path: str) -> None:
    run_dir = os.path.dirname(path)
    cache = st.session_state.setdefault("_run_cache", {})
    rows, offset = cache.get(run_dir, ([], 0))
    new, offset = read_metrics(path, offset)
    rows = rows + new
    cache[run_dir] = (rows, offset)
    if not rows:
        st.warning(f"No metrics yet in {run_dir}/metrics.jsonl.")
        return
    df = pd.DataFrame(rows).set_index("step")
    st.caption(f"{len(df)} logged steps; last step {df.index.max()}")
    for name in RUN_SERIES:
        if name in df:
            st.markdown(f"**{name}**")
            st.line_chart(df[[name]])
