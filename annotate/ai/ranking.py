"""Rankings from pairwise AI judgements: Bradley–Terry strengths per prompt.

Bradley & Terry (1952): P(i ≻ j) = p_i / (p_i + p_j), a tie counting half a win each way. Each prompt
is one tournament of `prefkit.annotate.bradley_terry.fit` (the one fit curation uses too): the
maximum of the log-likelihood plus one virtual tie of every item against a reference of strength 1
(log-strength 0), so an item that won or lost everything stays finite and every prompt gets a full
ranking. The reference fixes the scale, so the strengths are scaled to sum to n only at the end,
which keeps every ratio p_i / p_j and so the ranking.
"""

from __future__ import annotations

import numpy as np
from prefkit.annotate import bradley_terry as bt
from prefkit.annotate.ai.engine import AIError
from prefkit.annotate.ai.rows import ai_judgement
from prefkit.annotate.ids import content_hash
from prefkit.annotate.store import Store


def bradley_terry(n: int, outcomes: list[tuple[int, int, float]], iterations: int = bt.MAX_ITERATIONS) -> np.ndarray:
    """Strengths (summing to n) from outcomes (i, j, s): item i scored s ∈ [0, 1] against item j.

    Shape: returns (n,). Pure; deterministic. Raises AIError if the fit has not converged (which the
    objective's strict concavity rules out for any real input: never a silent half-fit).
    """
    if n == 0:
        return np.zeros(0)
    i, j, s = (np.asarray(c, float) for c in zip(*outcomes, strict=True)) if outcomes else (np.zeros(0),) * 3
    theta, how = bt.fit(np.zeros(n, dtype=np.int64), i, j, s, 1.0 - s, max_iterations=iterations)
    if not how.converged:
        raise AIError(f"Bradley–Terry fit did not converge in {iterations} steps (gradient {how.max_gradient:.3g})")
    p = np.exp(theta - theta.max())
    return p * n / p.sum()


def write_rankings(store: Store, annotator: str, guidelines: str, unfinished: set[str] | None = None) -> int:
    """One `ranking` judgement per prompt from the annotator's submitted pairwise rows: responses from
    strongest to weakest, scores = negative ranks (DESIGN §2), strengths in metadata. Idempotent: the
    id hashes the pairwise rows it was made from. Prompts in `unfinished` (a comparison failed or was
    not sent) are left for the run that completes them, so no ranking is made from part of the pairs."""
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
        if unfinished and pid in unfinished:
            continue
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
            ai_judgement(
                jid,
                pid,
                "ranking",
                annotator + "+bt",
                [items[i] for i in order],
                guidelines,
                {"strengths": [float(strength[i]) for i in order], "comparisons": len(judged)},
                scores=[-float(rank + 1) for rank in range(len(order))],
                rationale="Bradley–Terry over the pairwise judgements of " + annotator,
            )
        )
    if out:
        store.append("judgements", out)
    return len(out)
