"""`prefkit score` and `prefkit score-pairs`: what a trained model thinks, written back to the store.

The glue between `train` (which reads exported datasets only) and the store: scores become AI
judgements, so curation and the review page see them like any other label.

- `score`: a reward model (`prefkit train rm`) rates every response in the store → `rating` judgements.
- `score-pairs`: the implicit reward margin of every exported pair under a trained policy; the pairs
  the model most strongly disagrees with (lowest margin) → `pairwise` judgements giving the model's
  own preference, with the margin in `metadata`, for people to review.

A judgement names the responses by the store ids the export carries (`prompt_id`, `chosen_id`,
`rejected_id`). Only a dataset exported before prefkit kept them falls back to re-hashing prompt and
text, with a notice: that gives the wrong id for a response curation merged onto a duplicate prompt
(its id hashes the prompt it was stored under, the export names the canonical one).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

from prefkit.annotate.ai.rows import ai_judgement
from prefkit.annotate.contract import Judgement
from prefkit.annotate.ids import prompt_id, request_id, response_id
from prefkit.annotate.store import Store
from prefkit.curate.votes import MODEL_VERDICTS


class ScoreError(ValueError):
    """Bad input to score/score-pairs; the message says what to change."""


def _messages(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def _content(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]


def _has_ids(row: dict) -> bool:
    return bool(row.get("chosen_id") and row.get("rejected_id"))


def pair_ids(row: dict) -> tuple[str, list[str], bool]:
    """(prompt id, [chosen id, rejected id], whether the response ids were re-hashed) of an exported
    preference row.

    The row's own store ids (`prompt_id`, `chosen_id`, `rejected_id`, as `prefkit export` writes them)
    when it has them; else (an export from before they were kept, or a dataset from elsewhere) the hash
    of prompt and text, which is the store's id only for a response stored under that very prompt."""
    pid = row.get("prompt_id") or prompt_id(_messages(row["prompt"]))
    if _has_ids(row):
        return pid, [row["chosen_id"], row["rejected_id"]], False
    return pid, [response_id(pid, _content(row["chosen"])), response_id(pid, _content(row["rejected"]))], True


def rehash_notice(data: str | Path, rehashed: int, total: int) -> str:
    return (
        f"{data}: {rehashed} of {total} pairs have no chosen_id and rejected_id (exported before prefkit "
        "kept the store's ids), so their response ids were re-hashed from the text; a response curation merged "
        "onto a duplicate prompt gets an id the store does not have. Re-run `prefkit export` to keep the ids"
    )


def disagreement_judgements(
    margins: list[dict], run_name: str, top: int, below: float | None = None
) -> list[Judgement]:
    """The `top` pairs with the lowest margin (only those under `below`, when given), as the model's
    pairwise judgement (response_ids in the dataset's order [chosen, rejected], from `pair_ids`; scores
    give the model's own preference, so a pair it still agrees with is recorded as agreement, not as a
    dispute)."""
    kept = [m for m in margins if below is None or m["margin"] < below]
    annotator = f"ai:{run_name}:implicit-reward"
    out, seen = [], set()
    for m in sorted(kept, key=lambda m: m["margin"]):
        if len(out) == top:
            break
        pid, ids, _ = pair_ids(m["row"])
        if tuple(ids) in seen:  # the same pair exported once per aspect: one judgement (one id) for it
            continue
        seen.add(tuple(ids))
        p_first = 1 / (1 + math.exp(-m["margin"]))  # Bradley–Terry: P(chosen ≻ rejected) under the policy
        out.append(
            ai_judgement(
                request_id({"score-pairs": run_name, "response_ids": ids}),
                pid,
                "pairwise",
                annotator,
                ids,
                f"{MODEL_VERDICTS}{run_name}",  # curation leaves these out of the votes
                {
                    "source": "score-pairs",
                    "margin": m["margin"],
                    "split": m["split"],
                    "index": m["index"],
                    "chosen_reward": m["chosen_reward"],
                    "rejected_reward": m["rejected_reward"],
                },
                scores=[1.0, 0.0] if m["margin"] > 0 else [0.0, 1.0],
                confidence=p_first,
                rationale=(
                    f"implicit reward margin {m['margin']:.3f} under {run_name}: "
                    + (
                        "the trained model prefers the response labelled rejected"
                        if m["margin"] < 0
                        else "one of the pairs the trained model is least sure of"
                    )
                    + "; worth a second look"
                ),
            )
        )
    return out


def score_pairs(
    store: Store,
    run_dir: str | Path,
    data: str | Path,
    top: int = 50,
    split: str | None = None,
    below: float | None = None,
    notice: Callable[[str], None] | None = None,
) -> list[Judgement]:
    """Score the preference rows of the exported dataset `data` under the run's policy and append the
    `disagreement_judgements` to `store`. When rows lack the store ids, `notice` (default: a Python
    warning) gets one line saying their ids were re-hashed."""
    from prefkit.train.scoring import pair_margins

    margins = pair_margins(run_dir, data, split)
    rehashed = sum(not _has_ids(m["row"]) for m in margins)  # counted, not hashed
    if rehashed:
        (notice or (lambda msg: warnings.warn(msg, stacklevel=3)))(rehash_notice(data, rehashed, len(margins)))
    judgements = disagreement_judgements(margins, Path(run_dir).resolve().name, top, below)
    if judgements:
        store.append("judgements", judgements)
    return judgements


def score_responses(store: Store, model_dir: str | Path, limit: int | None = None) -> int:
    """Rate every response of the store not yet rated by this reward model; returns how many were written."""
    from prefkit.train.scoring import reward_scores

    annotator = f"ai:{Path(model_dir).resolve().name}:reward-model"
    con = store.connect()
    rows = con.execute(
        """
        SELECT r.response_id, r.prompt_id, p.messages, r.content
        FROM responses r JOIN prompts p USING (prompt_id)
        WHERE r.response_id NOT IN (
            SELECT unnest(response_ids) FROM judgements WHERE annotator = ? AND kind = 'rating')
        ORDER BY r.response_id
        """
        + (" LIMIT ?" if limit else ""),
        [annotator, limit] if limit else [annotator],
    ).fetchall()
    if not rows:
        return 0
    scores = reward_scores(model_dir, [(list(msgs), content) for _, _, msgs, content in rows])
    store.append(
        "judgements",
        [
            ai_judgement(
                request_id({"rm": annotator, "response_id": rid}),
                pid,
                "rating",
                annotator,
                [rid],
                f"reward-model:{annotator}",
                scores=[float(s)],
            )
            for (rid, pid, _, _), s in zip(rows, scores, strict=True)
        ],
    )
    return len(rows)
