"""Review: items where people disagree, or where people and the AI judge disagree. A reviewer's
verdict is stored as an `adjudicator` judgement naming the votes it settles."""

from __future__ import annotations

import streamlit as st
from prefkit.annotate.app import metrics, submit
from prefkit.annotate.app.content import inert_images
from prefkit.annotate.app.items import parse_key
from prefkit.annotate.app.pages.dashboard import _pairwise
from prefkit.annotate.app.ui import board as get_board
from prefkit.annotate.app.ui import page_user, store_path
from prefkit.annotate.validate import ContractError

VERDICTS = {"first": "A is better", "second": "B is better", "tie": "Tie"}


def link(label: str, ai: str | None = None) -> None:
    """A link to this page (same session, so a login holds), filtered to the pairs where the AI
    annotator `ai` and people disagree when given (the Training runs and judge pages use it)."""
    target = st.Page(page, title="Review", url_path="review")  # matches app.py's entry: a callable needs its Page
    st.page_link(target, label=label, icon=":material/rate_review:", query_params={"ai": ai} if ai else None)


def page() -> None:
    user = page_user(lambda u: u.can_review, "Reviewers only.")
    st.title("Review")
    b = get_board()
    df = _pairwise(store_path())
    ai = st.query_params.get("ai") or None
    if ai and ai not in set(df.loc[df.annotator_type == "ai", "annotator"]):
        st.warning("No AI annotator by that name has judged pairs in this store; showing every disagreement.")
        ai = None
    queue = metrics.review_queue(df, ai=ai)
    if ai:  # a name from the URL: shown as code, never as Markdown
        st.info("Only the pairs where this AI annotator and people disagree:")
        st.code(ai, language=None)
        st.page_link(st.Page(page, title="Review", url_path="review"), label="Show every disagreement")
    if queue.empty:
        st.success("Nothing to review: no disagreements left.")
        return
    st.caption(f"{len(queue)} items to settle")
    pos = st.number_input("Item", 1, len(queue), 1, key="review_pos") - 1
    row = queue.iloc[pos]
    item = parse_key(row["item"])
    st.markdown(f"**Why:** {row['reason']} · votes {row['votes']} · AI: {row['ai'] or '–'}")
    for m in b.content.messages(item.prompt_id):
        with st.chat_message(m["role"]):
            st.markdown(inert_images(m["content"]))
    cols = st.columns(2, border=True)
    for col, letter, rid in zip(cols, "AB", item.response_ids, strict=False):
        with col:
            st.markdown(f"**{letter}**  ·  votes for it: {row['votes'].get('first' if letter == 'A' else 'second', 0)}")
            st.markdown(inert_images(b.content.text(rid)))
    verdict = st.segmented_control("Verdict", list(VERDICTS), format_func=VERDICTS.get, key=f"verdict-{pos}")
    why = st.text_input("Reason", key=f"review-why-{pos}")
    if st.button("Settle", type="primary", disabled=verdict is None, key=f"settle-{pos}"):
        try:
            js = submit.adjudicate(b.project, user.login, item, verdict, row["judgement_ids"], rationale=why)
            b.store.append("judgements", js)
        except (submit.SubmitError, ContractError) as exc:
            st.error(f"Not saved: {exc}")
            return
        _pairwise.clear()
        st.toast("Settled.")
        st.rerun()
