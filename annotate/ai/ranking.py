"""Rankings from pairwise AI judgements: Bradley–Terry strengths per prompt.

Bradley & Terry (1952): P(i ≻ j) = p_i / (p_i + p_j). The strengths are fitted with Hunter's (2004)
minorise–maximise update p_i ← W_i / Σ_j n_ij / (p_i + p_j), a tie counting half a win each way. A
small prior (one virtual tie of every item against a reference of strength 1) keeps an item that won or
lost everything at a finite strength, so every prompt gets a full ranking.
"""

from __future__ import annotations

import json

import numpy as np

from annotate.contract import Judgement
from annotate.ids import content_hash
from annotate.store import Store


def bradley_terry(
    n: int, outcomes: list[tuple[int, int, float]], iterations: int = 200, tol: float = 1e-9
) -> np.ndarray:
    """Strengths (summing to n) from outcomes (i, j, s): item i scored s ∈ [0, 1] against item j.

    Shape: returns (n,). Pure; deterministic.
    """
    wins = np.full(n, 0.5)  # the prior's half win against the reference
    games = np.zeros((n, n))
    for i, j, s in outcomes:
        wins[i] += s
        wins[j] += 1.0 - s
        games[i, j] += 1
        games[j, i] += 1
    p = np.ones(n)
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1) + 1.0 / (p + 1.0)  # + the reference game
        new = wins / denom
        new *= n / new.sum()
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return p


def write_rankings(store: Store, annotator: str, guidelines: str) -> int:
    """One `ranking` judgement per prompt from the annotator's submitted pairwise rows: responses from
    strongest to weakest, scores = negative ranks (DESIGN §2), strengths in metadata. Idempotent: the
    id hashes the pairwise rows it was made from."""
    con = store.connect()
    try:
        rows = con.execute(
            "SELECT prompt_id, judgement_id, response_ids, scores FROM judgements "
            "WHERE annotator = ? AND kind = 'pairwise' AND status = 'submitted' ORDER BY prompt_id, judgement_id",
            [annotator],
        ).fetchall()
        have = {r[0] for r in con.execute("SELECT judgement_id FROM judgements WHERE kind = 'ranking'").fetchall()}
    finally:
        con.close()
    by_prompt: dict[str, list] = {}
    for pid, jid, ids, scores in rows:
        by_prompt.setdefault(pid, []).append((jid, ids, scores))
    out = []
    for pid, judged in by_prompt.items():
        items = sorted({r for _, ids, _ in judged for r in ids})
        index = {r: i for i, r in enumerate(items)}
        outcomes = [
            (index[ids[0]], index[ids[1]], scores[0] / (scores[0] + scores[1]) if sum(scores) else 0.5)
            for _, ids, scores in judged
        ]
        strength = bradley_terry(len(items), outcomes)
        order = sorted(range(len(items)), key=lambda i: -strength[i])
        jid = content_hash(["ranking", annotator, sorted(j for j, _, _ in judged)])
        if jid in have:
            continue
        out.append(
            Judgement(
                judgement_id=jid,
                prompt_id=pid,
                kind="ranking",
                annotator=annotator + "+bt",
                annotator_type="ai",
                response_ids=[items[i] for i in order],
                scores=[-float(rank + 1) for rank in range(len(order))],
                guidelines=guidelines,
                rationale="Bradley–Terry over the pairwise judgements of " + annotator,
                metadata=json.dumps({"strengths": [float(strength[i]) for i in order], "comparisons": len(judged)}),
            )
        )
    if out:
        store.append("judgements", out)
    return len(out)
