"""The annotate page: one item at a time, keyboard first (digits choose, Enter submits, S skips).

Model text goes through `st.markdown` with raw HTML off (Streamlit's default), so markdown and code
render and HTML shows as text, and its images become links (`inert_images`: no request leaves for
them); the edit diff is plain text in a code block.
"""

from __future__ import annotations

import hashlib

import streamlit as st
from prefkit.annotate.app import submit
from prefkit.annotate.app.board import Board
from prefkit.annotate.app.content import inert_images
from prefkit.annotate.app.items import split_steps, word_diff
from prefkit.annotate.app.submit import STEP_LABELS, Shown, SubmitError
from prefkit.annotate.app.ui import board as get_board
from prefkit.annotate.app.ui import current_user
from prefkit.annotate.store import StoreError
from prefkit.annotate.validate import ContractError

LETTERS = "ABCDEFGH"
SKIP_REASONS = ["unclear prompt", "cannot judge (expertise)", "broken or empty response", "offensive content", "other"]
LONG = 1500  # characters: longer texts scroll inside a fixed-height box
PAIR_LABELS = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def _show_text(text: str) -> None:
    """Model or prompt text, rendered (see the module's docstring for what is made inert)."""
    if len(text) > LONG:  # collapsible, and scrolling inside a fixed height so the buttons stay in view
        with st.expander(f"{len(text):,} characters", expanded=True), st.container(height=420):
            st.markdown(inert_images(text))
    else:
        st.markdown(inert_images(text))


def _conversation(b: Board, shown: Shown) -> None:
    messages = b.content.messages(shown.item.prompt_id)
    earlier, last = messages[:-1], messages[-1:]
    if earlier:
        with st.expander(f"Earlier turns ({len(earlier)})", expanded=len(earlier) <= 2):
            for m in earlier:
                with st.chat_message(m["role"]):
                    _show_text(m["content"])
    with st.container(key="prompt"):
        for m in last:
            with st.chat_message(m["role"]):
                _show_text(m["content"])


def _responses(b: Board, shown: Shown) -> None:
    cols = st.columns(len(shown.order), border=True)
    for col, letter, rid in zip(cols, LETTERS, shown.order, strict=False):
        with col, st.container(key=f"response-{letter}"):
            st.markdown(f"**{letter}**" if len(shown.order) > 1 else "**Response**")
            _show_text(b.content.text(rid))


def _current(b: Board, login: str, kind: str) -> Shown | None:
    """The item on screen for this person and task; the same one on every rerun until answered."""
    fresh = b.show(login, kind)
    slot = f"_shown:{login}:{kind}"
    kept = st.session_state.get(slot)
    if fresh is None:
        st.session_state.pop(slot, None)
        return None
    if kept is None or kept.item != fresh.item:
        st.session_state[slot] = fresh
        return fresh
    return kept


def _done(login: str, kind: str, status: str) -> None:
    st.session_state.pop(f"_shown:{login}:{kind}", None)
    st.session_state["_flash"] = "Saved." if status == "submitted" else f"Saved ({status})."
    st.rerun()


def _save(b: Board, shown: Shown, build) -> None:
    try:
        records = build()
        if isinstance(records, tuple):  # an edit: (new response, judgements)
            responses, judgements = [records[0]], records[1]
        else:
            responses, judgements = [], records
        status = b.submit(shown, judgements, responses)
    except (SubmitError, ContractError, StoreError) as exc:
        st.error(f"Not saved: {exc}")
        return
    _done(shown.annotator, shown.item.kind, status)


def _rationale(prefix: str) -> str:
    return st.text_input("Rationale (optional)", key=f"{prefix}-why")


def _submit_button(prefix: str, disabled: bool = False) -> bool:
    return st.button("Submit", shortcut="Enter", type="primary", key=f"{prefix}-submit", disabled=disabled)


def _choice_buttons(prefix: str, options: dict[str, str]) -> str | None:
    """Buttons with digit shortcuts that select an option (kept in session state until submitted)."""
    state = f"{prefix}-choice"
    cols = st.columns(len(options))
    for i, (col, (value, label)) in enumerate(zip(cols, options.items(), strict=False)):
        with col:
            chosen = st.session_state.get(state) == value
            if st.button(
                f"{label}",
                shortcut=str(i + 1),
                key=f"{prefix}-opt-{value}",
                type="primary" if chosen else "secondary",
                width="stretch",
            ):
                st.session_state[state] = value
                st.rerun()
    choice = st.session_state.get(state)
    st.caption(f"Selected: **{options[choice]}**" if choice else "Nothing selected yet.")
    return choice


def _pairwise(b: Board, shown: Shown, prefix: str) -> None:
    project = b.project
    if shown.ai_shown is not None:
        ai = shown.ai_shown
        conf = "" if ai.get("confidence") is None else f" (confidence {ai['confidence']:.0%})"
        st.info(f"AI judge: **{ai['shown_as']}**{conf}")
    choice = _choice_buttons(prefix, PAIR_LABELS)
    strength = None
    if project.strength:
        strength = st.segmented_control(
            "How much better? (optional)",
            [1, 2, 3],
            key=f"{prefix}-strength",
            format_func=lambda s: {1: "slightly", 2: "clearly", 3: "much"}[s],
        )
    aspects = {}
    for aspect in project.aspects:
        aspects[aspect] = st.segmented_control(
            f"More {aspect}? (optional)", ["A", "B", "tie"], key=f"{prefix}-aspect-{aspect}"
        )
    why = _rationale(prefix)
    if _submit_button(prefix, disabled=choice is None):
        _save(
            b, shown, lambda: submit.pairwise(project, shown, choice, strength=strength, aspects=aspects, rationale=why)
        )


def _ranking(b: Board, shown: Shown, prefix: str) -> None:
    n = len(shown.order)
    st.caption("Give each response a rank: 1 = best. Equal ranks are ties.")
    ranks = []
    for i in range(n):
        ranks.append(st.segmented_control(f"Rank of {LETTERS[i]}", list(range(1, n + 1)), key=f"{prefix}-rank-{i}"))
    why = _rationale(prefix)
    if _submit_button(prefix, disabled=any(r is None for r in ranks)):
        _save(b, shown, lambda: submit.ranking(b.project, shown, ranks, rationale=why))


def _binary(b: Board, shown: Shown, prefix: str) -> None:
    choice = _choice_buttons(prefix, {"good": "👍 Good", "bad": "👎 Bad"})
    why = _rationale(prefix)
    if _submit_button(prefix, disabled=choice is None):
        _save(b, shown, lambda: submit.binary(b.project, shown, choice == "good", rationale=why))


def _rating(b: Board, shown: Shown, prefix: str) -> None:
    scale = list(range(1, b.project.rating_scale + 1))
    ratings = {
        a: st.segmented_control(f"{a} (1 = poor … {scale[-1]} = excellent)", scale, key=f"{prefix}-rate-{a}")
        for a in b.project.rating_aspects
    }
    why = _rationale(prefix)
    if _submit_button(prefix, disabled=any(v is None for v in ratings.values())):
        _save(b, shown, lambda: submit.rating(b.project, shown, ratings, rationale=why))


def _edit(b: Board, shown: Shown, prefix: str) -> None:
    original = b.content.text(shown.order[0])
    st.caption("Rewrite the response minimally: fix what is wrong, keep what is right.")
    revised = st.text_area("Your revision", value=original, height=220, key=f"{prefix}-edit")
    st.caption("Changes ( [-removed-] {+added+} )")
    st.code(word_diff(original, revised), language=None, wrap_lines=True)
    why = _rationale(prefix)
    if st.button("Submit edit", type="primary", key=f"{prefix}-submit"):
        _save(b, shown, lambda: submit.edit(b.project, shown, original, revised, rationale=why))


def _steps(b: Board, shown: Shown, prefix: str) -> None:
    texts = split_steps(b.content.text(shown.order[0]))
    labels = []
    for i, text in enumerate(texts):
        with st.container(border=True):
            st.markdown(f"**Step {i + 1}**")
            st.markdown(inert_images(text))
            labels.append(
                st.segmented_control(f"Step {i + 1} is", list(STEP_LABELS), default="neutral", key=f"{prefix}-step-{i}")
            )
    why = _rationale(prefix)
    if _submit_button(prefix, disabled=any(x is None for x in labels)):
        _save(b, shown, lambda: submit.steps(b.project, shown, texts, [STEP_LABELS[x] for x in labels], rationale=why))


def _skip(b: Board, shown: Shown, prefix: str) -> None:
    cols = st.columns([3, 1])
    with cols[0]:
        reason = st.selectbox("Skip reason", SKIP_REASONS, key=f"{prefix}-skipwhy", label_visibility="collapsed")
    with cols[1]:
        if st.button("Skip", shortcut="S", key=f"{prefix}-skip", width="stretch"):
            _save(b, shown, lambda: submit.skip(b.project, shown, reason))


KIND_UI = {
    "pairwise": _pairwise,
    "ranking": _ranking,
    "binary": _binary,
    "rating": _rating,
    "edit": _edit,
    "steps": _steps,
}
LEGEND = {
    "pairwise": "**1** A better · **2** B better · **3** tie · **4** both bad · **Enter** submit · **S** skip",
    "binary": "**1** good · **2** bad · **Enter** submit · **S** skip",
}


def page() -> None:
    user = current_user()
    if user is None:  # app.py only routes here after login; refuse anyway
        st.stop()
    b = get_board()
    kinds = [t.kind for t in b.project.tasks]
    # clicking the selected option again deselects it: keep the last task rather than jump to another
    kind = st.segmented_control("Task", kinds, default=kinds[0], key="task") or st.session_state.get("_task", kinds[0])
    st.session_state["_task"] = kind
    shown = _current(b, user.login, kind)  # first: looking for an item brings in others' answers
    p = b.index.progress(user.login, kind)
    st.progress(
        p.filled / p.needed if p.needed else 1.0,
        text=f"You: {p.mine} done · all: {p.filled}/{p.needed} judgements ({p.items} items, k={p.needed // max(p.items, 1)})",
    )
    if flash := st.session_state.pop("_flash", None):
        st.toast(flash)
    if shown is None:
        if p.filled >= p.needed:
            st.success(f"Nothing left to label in **{kind}**. Thank you!")
            return
        # Judgements are still missing, but on items this person has answered or skipped, or that others
        # hold: a lease not answered within its time comes back to the pool, so this may change.
        st.info(
            f"Nothing left to label in **{kind}** for you right now: {p.needed - p.filled} judgements are still "
            f"open on items you have answered or skipped, or that others are labelling. An item someone leaves "
            f"unanswered comes back after {b.project.lease_minutes:g} minutes."
        )
        if st.button("Check again", key=f"check-again-{kind}"):
            st.rerun()
        return
    prefix = f"{kind}-{hashlib.sha1(shown.item.key.encode()).hexdigest()[:10]}"
    st.caption(LEGEND.get(kind, "**Enter** submit · **S** skip"))
    if b.project.guidelines_text:
        with st.expander("Guidelines"):
            st.markdown(b.project.guidelines_text)
    with st.container(key=f"item-{prefix}"):  # the key names the item on screen (tests wait on it)
        _conversation(b, shown)
        _responses(b, shown)
        KIND_UI[kind](b, shown, prefix)
        _skip(b, shown, prefix)
