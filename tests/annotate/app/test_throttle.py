"""The login back-off, on its own clock."""

from __future__ import annotations

import pytest
from prefkit.annotate.app.throttle import LoginGuard, Throttle


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reference_wait(failures: int, free: int, base: float, cap: float) -> float:
    return 0.0 if failures < free else min(cap, base * 2 ** (failures - free))


def test_waits_double_after_the_free_failures_and_stop_at_the_cap():
    clock = Clock()
    t = Throttle(free=3, base=1.0, cap=60.0, clock=clock)
    for n in range(1, 15):
        t.failed("alice")
        assert t.wait("alice") == pytest.approx(_reference_wait(n, 3, 1.0, 60.0))
        clock.now += t.wait("alice")  # wait it out, then fail again
    assert t.wait("bob") == 0.0  # keys are separate


def test_the_wait_runs_down_and_failures_are_forgotten_after_a_quiet_spell():
    clock = Clock()
    t = Throttle(free=1, base=8.0, cap=100.0, forget=60.0, clock=clock)
    t.failed("alice")
    assert t.wait("alice") == 8.0
    clock.now += 5
    assert t.wait("alice") == pytest.approx(3.0)
    clock.now += 3 + 59
    t.failed("alice")  # still remembered: the second failure waits twice as long
    assert t.wait("alice") == 16.0
    clock.now += 16 + 61
    t.failed("alice")  # forgotten by now: back to the first wait
    assert t.wait("alice") == 8.0


def test_success_clears_the_login_but_not_the_address():
    clock = Clock()
    guard = LoginGuard(Throttle(free=2, clock=clock), Throttle(free=3, clock=clock))
    for _ in range(2):
        guard.failed("alice", "10.0.0.9")
    assert guard.wait("alice", "10.0.0.1") == 1.0  # per login, from any address
    clock.now += 1
    guard.succeeded("alice")
    assert guard.wait("alice", "10.0.0.1") == 0.0
    for login in ("x", "y"):  # spraying other logins from one address
        guard.failed(login, "10.0.0.9")
    assert guard.wait("alice", "10.0.0.9") > 0 and guard.wait("alice", "10.0.0.1") == 0.0
    guard.succeeded("x")
    assert guard.wait("carol", "10.0.0.9") > 0  # one valid account does not clear the address


def test_made_up_logins_cannot_grow_memory_without_bound():
    t = Throttle(free=5, clock=Clock(), max_keys=100)
    for i in range(1000):
        t.failed(f"user{i}")
    assert len(t._records) <= 101
