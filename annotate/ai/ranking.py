"""Rankings from pairwise AI judgements: Bradley–Terry strengths per prompt.

Bradley & Terry (1952): P(i ≻ j) = p_i / (p_i + p_j), a tie counting half a win each way. The fit is
the maximum of the log-likelihood plus a small prior: one virtual tie of every item against a reference
of strength 1, so an item that won or lost everything stays finite and every prompt gets a full
ranking. With θ = log p the objective

    Σ_(i,j,s) [s·log σ(θ_i − θ_j) + (1 − s)·log σ(θ_j − θ_i)] + Σ_i ½·[log σ(θ_i) + log σ(−θ_i)]

is strictly concave (the prior's terms see to that), so it has one maximum; Newton's method with a
step-halving line search reaches it to `tol` in a few steps. The reference fixes the scale, so the
strengths are never rescaled while fitting (doing so moves the fit off the maximum); the result is
scaled to sum to n only at the end, which keeps every ratio p_i / p_j and so the ranking.
"""

from __future__ import annotations

import json

import numpy as np
from prefkit.annotate.ai.engine import AIError
from prefkit.annotate.contract import Judgement
from prefkit.annotate.ids import content_hash
from prefkit.annotate.store import Store


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def log_likelihood(theta: np.ndarray, outcomes: list[tuple[int, int, float]]) -> float:
    """The objective the fit maximises (prior included), at log-strengths `theta`."""
    i, j, s = _arrays(outcomes)
    d = theta[i] - theta[j]
    games = float(np.sum(s * _log_sigmoid(d) + (1 - s) * _log_sigmoid(-d)))
    return games + float(np.sum(0.5 * _log_sigmoid(theta) + 0.5 * _log_sigmoid(-theta)))


def _arrays(outcomes: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not outcomes:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    i, j, s = zip(*outcomes, strict=True)
    return np.asarray(i, int), np.asarray(j, int), np.asarray(s, float)


def bradley_terry(
    n: int, outcomes: list[tuple[int, int, float]], iterations: int = 100, tol: float = 1e-10
) -> np.ndarray:
    """Strengths (summing to n) from outcomes (i, j, s): item i scored s ∈ [0, 1] against item j.

    The maximum of `log_likelihood` (see the module docstring), found to a gradient below `tol`.
    Shape: returns (n,). Pure; deterministic. Raises AIError if it has not converged (which the
    strict concavity rules out for any real input: never a silent half-fit).
    """
    if n == 0:
        return np.zeros(0)
    i, j, s = _arrays(outcomes)
    theta = np.zeros(n)
    for _ in range(iterations):
        d = theta[i] - theta[j]
        won = s - _sigmoid(d)  # observed minus expected score of i in each game
        grad = np.bincount(i, won, n) - np.bincount(j, won, n) + 0.5 - _sigmoid(theta)
        if np.max(np.abs(grad), initial=0.0) < tol:
            p = np.exp(theta - theta.max())
            return p * n / p.sum()
        w = _sigmoid(d) * _sigmoid(-d)
        hess = np.zeros((n, n))  # the negative Hessian: a weighted graph Laplacian plus the prior's diagonal
        np.add.at(hess, (i, i), w)
        np.add.at(hess, (j, j), w)
        np.add.at(hess, (i, j), -w)
        np.add.at(hess, (j, i), -w)
        hess[np.diag_indices(n)] += _sigmoid(theta) * _sigmoid(-theta)
        step = np.linalg.solve(hess, grad)
        now, t = log_likelihood(theta, outcomes), 1.0
        while t > 1e-8 and log_likelihood(theta + t * step, outcomes) < now - 1e-12:
            t /= 2  # far from the maximum a full Newton step can overshoot
        theta = theta + t * step
    raise AIError(f"Bradley–Terry fit did not converge in {iterations} steps (gradient {np.max(np.abs(grad)):.3g})")


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
