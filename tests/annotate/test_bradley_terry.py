"""The Bradley–Terry fit (curation's votes and the AI rankings) held to scipy's general-purpose optimiser on the same objective.

The reference below is written from the model's definition, vote by vote (not from prefkit's code):
maximise Σ_votes [s log σ(θ_i − θ_j) + (1 − s) log σ(θ_j − θ_i)] + Σ_responses ½[log σ(θ) + log σ(−θ)],
s = 1 (i won), ½ (tie), 0 (j won); the second sum is the documented regulariser (one virtual tie per
response against a fixed opponent at 0). Without it the maximum does not exist when a response wins
every game, so the regularised maximum is what both sides must agree on. Tolerance: 1e-6 in every
log-strength (scipy's BFGS is run to a gradient of 1e-11; the objective's curvature is at least
σ(θ)(1 − σ(θ)) ≥ 1e-3 here, so its own error is below 1e-8).
"""

from __future__ import annotations

import numpy as np
from prefkit.annotate import bradley_terry
from scipy.optimize import minimize
from scipy.special import expit, log_expit


def reference(n: int, votes: list[tuple[int, int, float]], regularise: bool = True) -> np.ndarray:
    """scipy's maximum of the (regularised) Bradley–Terry log-likelihood of one tournament."""
    i = np.array([v[0] for v in votes], dtype=int)
    j = np.array([v[1] for v in votes], dtype=int)
    s = np.array([v[2] for v in votes], dtype=float)
    reg = 0.5 if regularise else 0.0

    def negative(theta):
        d = theta[i] - theta[j]
        value = (s * log_expit(d) + (1 - s) * log_expit(-d)).sum() + reg * (log_expit(theta) + log_expit(-theta)).sum()
        r = s - expit(d)
        grad = reg * (1 - 2 * expit(theta))
        np.add.at(grad, i, r)
        np.add.at(grad, j, -r)
        return -value, -grad

    x0 = np.zeros(n)
    res = minimize(negative, x0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 20_000})
    theta = res.x
    return theta if regularise else theta - theta.mean()


def prefkit_fit(tournaments: list[tuple[int, list[tuple[int, int, float]]]], **kw):
    """Fit many tournaments in one call, as curation does; return each tournament's log-strengths."""
    sizes = [n for n, _ in tournaments]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    owner = np.repeat(np.arange(len(sizes)), sizes)
    a, b, wa = [], [], []
    for t, (_, votes) in enumerate(tournaments):
        for i, j, s in votes:
            a.append(offsets[t] + i)
            b.append(offsets[t] + j)
            wa.append(s)
    wa = np.array(wa, dtype=float)
    theta, how = bradley_terry.fit(owner, np.array(a, dtype=int), np.array(b, dtype=int), wa, 1 - wa, **kw)
    return [theta[offsets[t] : offsets[t + 1]] for t in range(len(sizes))], how


def random_tournaments(rng: np.random.Generator, count: int) -> list[tuple[int, list[tuple[int, int, float]]]]:
    out = []
    for _ in range(count):
        n = int(rng.integers(2, 8))
        strength = rng.normal(0, 2, n)
        votes = []
        for _ in range(int(rng.integers(1, 40))):
            i, j = rng.choice(n, 2, replace=False)
            u = rng.random()
            p = expit(strength[i] - strength[j])
            s = 0.5 if u < 0.1 else float(rng.random() < p)
            votes.append((int(i), int(j), s))
        out.append((n, votes))
    return out


EDGE_CASES = [
    (3, [(0, 1, 1.0)] * 100 + [(1, 2, 1.0)] * 10),  # one response wins 100 of 100: the MLE is at infinity
    (3, [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0)]),  # a cycle: all equal
    (4, [(0, 1, 1.0)] * 5 + [(1, 2, 1.0)] * 3 + [(2, 0, 1.0)] * 4 + [(3, 0, 1.0)] * 2),  # a cycle and a winner
    (2, [(0, 1, 0.5)] * 7),  # only ties
    (4, [(0, 1, 1.0), (2, 3, 0.0)]),  # two halves that never meet
    (2, [(0, 1, 1.0)] * 500),  # a long unbeaten run
    (5, [(i, j, 1.0) for i in range(5) for j in range(i + 1, 5)] * 20),  # a strict order, many votes
]


def test_fit_equals_scipy_on_random_tournaments_cycles_and_unbeaten_responses():
    rng = np.random.default_rng(20261201)
    cases = random_tournaments(rng, 150) + EDGE_CASES
    got, how = prefkit_fit(cases)
    assert how.converged and how.tournaments == len(cases) and how.max_gradient < 1e-8
    worst = 0.0
    for (n, votes), theta in zip(cases, got, strict=True):
        ref = reference(n, votes)
        worst = max(worst, float(np.abs(theta - ref).max()))
    assert worst < 1e-6


def test_an_unbeaten_response_is_finite_and_on_top_and_the_unregularised_mle_runs_away():
    n, votes = EDGE_CASES[0]
    (theta,), how = prefkit_fit([(n, votes)])
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1] > theta[2]
    # Without the regulariser the likelihood keeps rising as the winner's strength grows: no finite maximum.
    plain = reference(n, votes, regularise=False)
    assert plain[0] - plain[1] > theta[0] - theta[1] + 3


def test_with_many_votes_the_regulariser_hardly_moves_a_well_determined_fit():
    # Every pair met often in both directions: the plain MLE exists; the virtual ties are 3 of 3,000 games.
    votes = [(0, 1, 1.0)] * 700 + [(1, 0, 1.0)] * 300 + [(1, 2, 1.0)] * 600 + [(2, 1, 1.0)] * 400
    votes += [(0, 2, 1.0)] * 800 + [(2, 0, 1.0)] * 200
    (theta,), _ = prefkit_fit([(3, votes)])
    plain = reference(3, votes, regularise=False)
    diffs = lambda t: np.array([t[0] - t[1], t[1] - t[2], t[0] - t[2]])  # noqa: E731
    assert np.abs(diffs(theta) - diffs(plain)).max() < 0.01


def test_a_fit_cut_short_says_so():
    (theta,), how = prefkit_fit([EDGE_CASES[0]], max_iterations=1)
    assert not how.converged and how.not_converged == 1 and how.max_gradient > 1e-3
    report = how.as_report()
    assert report["converged"] is False and report["tournaments_not_converged"] == 1


def test_a_tournament_without_games_is_all_zero():
    # The only tournament of three players has no games (an AI ranking of a prompt nothing was sent for).
    (empty, played), how = prefkit_fit([(3, []), (2, [(0, 1, 1.0)])])
    assert how.converged and np.array_equal(empty, np.zeros(3))
    np.testing.assert_allclose(played, reference(2, [(0, 1, 1.0)]), atol=1e-6)
