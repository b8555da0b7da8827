"""Bradley–Terry rankings held to an independent maximum-likelihood fit: scipy's general optimiser
on the same documented objective (log-likelihood plus one virtual tie against a reference of
strength 1), over random tournaments, cycles, a response that always wins, and the issue's example."""

import numpy as np
import pytest
from prefkit.annotate.ai.ranking import bradley_terry
from scipy.optimize import minimize
from scipy.special import expit, log_expit

TOL = 1e-6  # on strengths normalised to sum 1, and on log-strength differences


def reference(n, outcomes):
    """The documented objective, written out again and minimised by BFGS with its exact gradient."""

    def loss(theta):
        value, grad = 0.0, np.zeros(n)
        for i, j, s in outcomes:
            d = theta[i] - theta[j]
            value -= s * log_expit(d) + (1 - s) * log_expit(-d)
            g = s - expit(d)
            grad[i] -= g
            grad[j] += g
        value -= np.sum(0.5 * log_expit(theta) + 0.5 * log_expit(-theta))
        grad -= 0.5 - expit(theta)
        return value, grad

    fit = minimize(loss, np.zeros(n), jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    assert fit.success or np.max(np.abs(fit.jac)) < 1e-7, fit.message  # BFGS may stop at float precision
    return fit.x


def assert_same_fit(n, outcomes):
    ours = bradley_terry(n, outcomes)
    theta = reference(n, outcomes)
    assert ours.sum() == pytest.approx(n)
    want = np.exp(theta) / np.exp(theta).sum()
    np.testing.assert_allclose(ours / ours.sum(), want, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.log(ours) - np.log(ours[0]), theta - theta[0], atol=1e-5)
    # The ranking: every pair the reference separates by more than the tolerance is in the same order.
    for a in range(n):
        for b in range(n):
            if theta[a] - theta[b] > 1e-4:
                assert ours[a] > ours[b], (a, b, ours, theta)


def test_the_issues_example_ranks_as_the_maximum_likelihood_fit():
    # (winner, loser, score): the old fit (rescaled each step against a fixed reference) swapped 0/1 and 2/4.
    outcomes = [(2, 3, 1), (1, 4, 1), (1, 2, 1), (2, 0, 0), (2, 0, 0)]
    assert_same_fit(5, outcomes)
    p = bradley_terry(5, outcomes)
    assert list(np.argsort(-p)) == [0, 1, 2, 4, 3]


def test_random_small_tournaments_match_scipy():
    rng = np.random.default_rng(14)
    for _ in range(300):
        n = int(rng.integers(2, 7))
        games = int(rng.integers(1, 3 * n))
        outcomes = []
        for _ in range(games):
            i, j = rng.choice(n, 2, replace=False)
            s = float(rng.choice([0.0, 0.5, 1.0], p=[0.4, 0.2, 0.4]))
            outcomes.append((int(i), int(j), s))
        assert_same_fit(n, outcomes)


@pytest.mark.parametrize(
    "n, outcomes",
    [
        (3, [(0, 1, 1), (1, 2, 1), (2, 0, 1)]),  # a cycle: all equal
        (4, [(0, 1, 1), (1, 2, 1), (2, 3, 1), (3, 0, 1), (0, 2, 1)]),  # a cycle plus a chord
        (3, [(0, 1, 1)] * 100 + [(0, 2, 1)] * 100 + [(1, 2, 1), (2, 1, 1)]),  # one response always wins
        (4, [(0, 1, 1)] * 30 + [(2, 3, 0.5)]),  # two components that never met
        (2, [(0, 1, 0.5)]),  # a tie
        (3, []),  # nothing judged
        (5, [(1, 0, 1), (2, 0, 1), (3, 0, 1), (4, 0, 1)]),  # one response always loses
    ],
    ids=["cycle", "cycle-and-chord", "always-wins", "disconnected", "tie", "no-games", "always-loses"],
)
def test_edge_cases_match_scipy(n, outcomes):
    assert_same_fit(n, outcomes)


def test_symmetry_and_finiteness():
    p = bradley_terry(3, [(0, 1, 1), (1, 2, 1), (2, 0, 1)])
    np.testing.assert_allclose(p, [1, 1, 1], atol=1e-9)  # a perfect cycle: no one is stronger
    sweep = bradley_terry(2, [(0, 1, 1)] * 1000)
    assert np.all(np.isfinite(sweep)) and sweep[0] > sweep[1] > 0
