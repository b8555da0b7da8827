"""Learn pages: the DPO loss explorer, and the Training runs page: the runs under the runs folder
the app was given, their loss, reward margin and accuracy curves overlaid as metrics.jsonl grows, and
the pairs each trained model disputes (`prefkit score-pairs`) one click from Review. Admins only, and
only inside the runs folder: the page reads files on the server."""

from __future__ import annotations

import os

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from prefkit.annotate.app.learn import (
    RunPathError,
    dpo,
    find_runs,
    metrics_path,
    read_metrics,
    run_annotator,
    scored_pairs,
)
from prefkit.annotate.app.pages import review
from prefkit.annotate.app.ui import keyed_chart, page_user, runs_root, store_path
from prefkit.annotate.store import Store

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
    st.title("Training runs")
    root = runs_root()
    found = find_runs(root)
    chosen = st.multiselect(
        f"Runs under {root}", found, default=found[:OVERLAY], key="runs", help="the newest first; their curves overlay"
    )
    extra = st.text_input(
        f"Another run folder (holds metrics.jsonl), inside {root}",
        value=os.environ.get("PREFKIT_RUN_DIR", ""),
        key="run_dir",
    )
    runs: dict[str, str] = {}  # label → metrics.jsonl, each path checked to lie inside the runs folder
    for rel in chosen:
        try:
            runs[rel] = str(metrics_path(root, rel))
        except RunPathError as exc:  # became a link out since it was listed
            st.error(str(exc))
    if extra:
        try:
            path = str(metrics_path(root, extra))
        except RunPathError as exc:
            st.error(str(exc))
        else:
            if path not in runs.values():
                runs[os.path.basename(os.path.dirname(path))] = path
    if not runs:
        st.info(
            f"No run chosen. `prefkit train METHOD … --out {root}/NAME` and `prefkit demo` write runs (metrics.jsonl); "
            "the curves follow metrics.jsonl as it grows."
        )
        return
    _run_charts(tuple(runs.items()))
    _disputes(runs)


OVERLAY = 5  # runs shown at first
CURVES = {"loss": "loss", "rewards/margins": "reward margin", "rewards/accuracies": "reward accuracy"}


@st.fragment(run_every=3)
def _run_charts(runs: tuple[tuple[str, str], ...]) -> None:
    cache = st.session_state.setdefault("_run_cache", {})
    frames = []
    for label, path in runs:
        rows, offset = cache.get(path, ([], 0))
        new, offset = read_metrics(path, offset)
        rows = rows + new
        cache[path] = (rows, offset)
        if not rows:
            st.warning(f"No metrics yet in {os.path.dirname(path)}/metrics.jsonl.")
            continue
        df = pd.DataFrame(rows)
        st.caption(f"{label}: {len(df)} logged steps; last step {df.step.max()}")
        frames.append(df.assign(run=label))
    if not frames:
        return
    df = pd.concat(frames, ignore_index=True)
    for name in [*CURVES, *(s for s in RUN_SERIES if s not in CURVES)]:
        parts = [
            df[["run", "step", col]].dropna().rename(columns={col: "value"}).assign(split=split)
            for col, split in ((name, "train"), (f"eval/{name}", "eval"))
            if col in df
        ]
        long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if long.empty:
            continue
        st.markdown(f"**{CURVES.get(name, name)}** (`{name}`)")
        chart = (
            alt.Chart(long)
            .mark_line(point=len(long) < 200)
            .encode(
                x=alt.X("step:Q"),
                y=alt.Y("value:Q", title=name, scale=alt.Scale(zero=False)),
                color=alt.Color("run:N"),
                strokeDash=alt.StrokeDash("split:N", scale=alt.Scale(domain=["train", "eval"])),
                tooltip=["run", "split", "step", alt.Tooltip("value:Q", format=".4f")],
            )
        )
        keyed_chart(f"run-{name.replace('/', '-')}", chart)


def _disputes(runs: dict[str, str]) -> None:
    """Per run, the pairs `prefkit score-pairs` found the trained model disputes, one click from Review."""
    st.subheader("Pairs the trained model disputes")
    con = Store(store_path()).connect()
    try:
        scored = {label: scored_pairs(con, os.path.dirname(path)) for label, path in runs.items()}
    finally:
        con.close()
    for label, rows in scored.items():
        run_dir = os.path.dirname(runs[label])
        if not rows:
            st.caption(
                f"{label}: no `prefkit score-pairs` output in this store. `prefkit score-pairs {run_dir} --data EXPORT "
                "--store STORE` scores the exported pairs under the trained policy and writes the most disputed back."
            )
            continue
        disputed = [r for r in rows if r["margin"] is not None and r["margin"] < 0]
        st.markdown(
            f"**{label}**: {len(rows)} pairs scored, {len(disputed)} with a negative implicit reward margin "
            "(the model prefers the response people rejected)"
        )
        table = pd.DataFrame(rows)[["prompt_id", "margin"]].head(10)
        st.dataframe(table, hide_index=True, key=f"disputes-{label}")
        review.link(f"Review the pairs {label} disputes", ai=run_annotator(run_dir))
