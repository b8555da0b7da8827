"""Bradley–Terry log-strengths for many small tournaments at once, fitted to a tolerance by Newton's method.

The model: P(i beats j) = σ(θ_i − θ_j). A tournament is one (prompt, aspect); its responses never meet
those of another, so the fit is one independent problem per tournament, solved side by side.

The objective maximised, for each tournament (a tie counts as half a win for each side):

    ℓ(θ) = Σ_games [ w_a log σ(θ_a − θ_b) + w_b log σ(θ_b − θ_a) ]  +  Σ_i ½ [ log σ(θ_i) + log σ(−θ_i) ]

The second sum is one virtual tie per response against a fixed opponent of log-strength 0. It is a
regulariser: ½[log σ(θ) + log σ(−θ)] = −log(2 cosh(θ/2)), about −θ²/8 near 0 and −|θ|/2 far out. It
keeps a response that wins every game finite (without it the maximum is at infinity) and anchors
each tournament's scale, and it makes ℓ strictly concave, so the maximum is unique.

Newton's method with a backtracking line search finds it (each step solves the tournament's small
linear system; tournaments of the same size are solved as one stacked array). A tournament has
converged when its Newton step is below `TOLERANCE` in every log-strength — at that point the
remaining error is far smaller still (Newton converges quadratically). One that has not converged
after `MAX_ITERATIONS` is counted in the returned `Fit`, and curation puts it in its report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-9  # largest Newton step (in log-strength) that counts as converged
MAX_ITERATIONS = 100  # Newton iterations per tournament; a few dozen are the most seen in practice
_CHUNK = 1 << 22  # most Hessian entries held at once (tournaments of one size are solved in chunks)
_ARMIJO = 1e-4


@dataclass
class Fit:
    """How the fit went: every tournament converged, or how many did not, and the worst gradient left."""

    tournaments: int = 0
    iterations: int = 0  # the most Newton iterations any tournament needed
    not_converged: int = 0  # tournaments still moving after MAX_ITERATIONS
    max_gradient: float = 0.0  # largest |∂ℓ/∂θ| left, over every response

    @property
    def converged(self) -> bool:
        return self.not_converged == 0

    def as_report(self) -> dict:
        return {
            "fit": "Newton (regularised by one virtual tie per response)",
            "tournaments": self.tournaments,
            "converged": self.converged,
            "tournaments_not_converged": self.not_converged,
            "iterations": self.iterations,
            "max_gradient": float(f"{self.max_gradient:.3g}"),
            "tolerance": TOLERANCE,
        }


def log_likelihood(theta: np.ndarray, a: np.ndarray, b: np.ndarray, wins_a: np.ndarray, wins_b: np.ndarray) -> float:
    """The objective ℓ above over all tournaments together (for tests and diagnostics)."""
    d = theta[a] - theta[b]
    games = -(wins_a * np.logaddexp(0.0, -d) + wins_b * np.logaddexp(0.0, d)).sum()
    return float(games - 0.5 * (np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)).sum())


def fit(
    tournament: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    wins_a: np.ndarray,
    wins_b: np.ndarray,
    max_iterations: int = MAX_ITERATIONS,
) -> tuple[np.ndarray, Fit]:
    """Log-strengths of every player, and how the fit went.

    tournament: per player, its tournament's number, non-decreasing (a tournament's players are
    contiguous). a, b: the two players of each game record (same tournament); wins_a, wins_b: a's and
    b's wins in it (ties as halves). Records of the same two players may repeat; they add up.
    """
    tournament = np.asarray(tournament, dtype=np.int64)
    n = len(tournament)
    theta = np.zeros(n)
    if n == 0:
        return theta, Fit()
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    wins_a, wins_b = np.asarray(wins_a, dtype=np.float64), np.asarray(wins_b, dtype=np.float64)
    if np.any(tournament[a] != tournament[b]):
        raise ValueError("a game between players of different tournaments")
    # One record per unordered pair of players; a game of a player against itself changes nothing.
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    w_lo = np.where(a <= b, wins_a, wins_b)
    keep = lo != hi
    code, inverse = np.unique(lo[keep] * n + hi[keep], return_inverse=True)
    pa_, pb_ = code // n, code % n
    pw = np.bincount(inverse, weights=w_lo[keep], minlength=len(code))
    pn = np.bincount(inverse, weights=(wins_a + wins_b)[keep], minlength=len(code))

    ids, start, size = np.unique(tournament, return_index=True, return_counts=True)
    if np.any(np.diff(tournament) < 0):
        raise ValueError("players must be sorted by tournament")
    block = np.searchsorted(ids, tournament)  # 0..T-1 per player
    report = Fit(tournaments=len(ids))
    pair_block = block[pa_]
    for k in np.unique(size):
        if k == 1:
            continue  # a lone response: its virtual tie puts it at exactly 0
        blocks = np.flatnonzero(size == k)
        per_chunk = max(1, _CHUNK // (k * k))
        for lo_b in range(0, len(blocks), per_chunk):
            chunk = blocks[lo_b : lo_b + per_chunk]
            _fit_same_size(theta, start[chunk], k, (pair_block, pa_, pb_, pw, pn), chunk, max_iterations, report)
    grad = _gradient_flat(theta, pa_, pb_, pw, pn)
    report.max_gradient = float(np.abs(grad).max()) if len(grad) else 0.0
    return theta, report


def _gradient_flat(theta, pa_, pb_, pw, pn) -> np.ndarray:
    p = _sigmoid(theta[pa_] - theta[pb_])
    r = pw - pn * p
    grad = 0.5 - _sigmoid(theta)
    grad += np.bincount(pa_, weights=r, minlength=len(theta)) - np.bincount(pb_, weights=r, minlength=len(theta))
    return grad


def _fit_same_size(theta, starts, k, pairs, chunk, max_iterations, report) -> None:
    """Newton on G tournaments of k players each (in place in `theta`)."""
    pair_block, pa_, pb_, pw, pn = pairs
    g_count = len(chunk)
    where = np.full(report.tournaments, -1, dtype=np.int64)
    where[chunk] = np.arange(g_count)
    mine = np.flatnonzero(where[pair_block] >= 0)
    g = where[pair_block[mine]]  # tournament of each pair, 0..G-1
    la, lb = pa_[mine] - starts[g], pb_[mine] - starts[g]
    w, m = pw[mine], pn[mine]
    cols = starts[:, None] + np.arange(k)
    th = theta[cols]  # (G, k)
    active = np.ones(g_count, dtype=bool)
    it = 0
    while active.any() and it < max_iterations:
        it += 1
        act = np.flatnonzero(active)
        sel = active[g]
        pos = np.cumsum(active) - 1  # tournament → row among the active ones
        gg, a_, b_, w_, m_ = pos[g[sel]], la[sel], lb[sel], w[sel], m[sel]
        t = th[act]
        grad, hess = _derivatives(t, gg, a_, b_, w_, m_, k)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        slope = (grad * step).sum(axis=1)
        base = _objective(t, gg, a_, b_, w_, m_)
        size = np.ones(len(act))
        todo = np.ones(len(act), dtype=bool)
        for _ in range(60):  # backtracking: halve the step until ℓ rises enough (Armijo)
            trial = t + size[:, None] * step
            value = _objective(trial, gg, a_, b_, w_, m_)
            # Near the optimum the rise is below rounding: accept what rounding cannot tell apart.
            ok = value >= base + _ARMIJO * size * slope - 1e-12 * (1.0 + np.abs(base))
            todo &= ~ok
            if not todo.any():
                break
            size = np.where(todo, size / 2, size)
        t = t + size[:, None] * step
        th[act] = t
        done = np.abs(step).max(axis=1) < TOLERANCE
        active[act[done]] = False
    theta[cols] = th
    report.iterations = max(report.iterations, it)
    report.not_converged += int(active.sum())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _derivatives(t, g, a, b, w, m, k) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (G, k) and negative Hessian (G, k, k) of ℓ for tournaments `t` (G, k)."""
    n_t = len(t)
    p = _sigmoid(t[g, a] - t[g, b])
    r = w - m * p  # ∂ℓ/∂θ_a of each pair; −r for θ_b
    s = _sigmoid(t)
    cells = n_t * k
    grad = 0.5 - s
    grad += (np.bincount(g * k + a, r, cells) - np.bincount(g * k + b, r, cells)).reshape(n_t, k)
    c = m * p * (1.0 - p)
    base, cells = g * k * k, n_t * k * k
    hess = np.zeros(cells)  # float even when no games were played (bincount of nothing is integer)
    hess += np.bincount(base + a * k + a, c, cells) + np.bincount(base + b * k + b, c, cells)
    hess -= np.bincount(base + a * k + b, c, cells) + np.bincount(base + b * k + a, c, cells)
    hess = hess.reshape(n_t, k, k)
    idx = np.arange(k)
    hess[:, idx, idx] += s * (1.0 - s)
    return grad, hess


def _objective(t, g, a, b, w, m) -> np.ndarray:
    """ℓ per tournament (G,)."""
    d = t[g, a] - t[g, b]
    games = w * np.logaddexp(0.0, -d) + (m - w) * np.logaddexp(0.0, d)
    out = -0.5 * (np.logaddexp(0.0, -t) + np.logaddexp(0.0, t)).sum(axis=1)
    out -= np.bincount(g, weights=games, minlength=len(t))
    return out
