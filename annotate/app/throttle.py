"""Login back-off: after a few failed logins, every further attempt for the same login, or from the
same client address, has to wait, twice as long after each failure (capped). While a key waits, no
password is checked at all, the right one included: guessing gets slower with every miss.

Unknown logins are tracked exactly like known ones, so the back-off says nothing about which
accounts exist. State lives in memory, per app process (a restart forgets it); failures are
forgotten after a quiet spell. No Streamlit here: the login page asks, this module counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0  # clock time of the last failure


class Throttle:
    """Failure counts per key (a login, or a client address) and how long each must wait.

    After `free` failures, the next attempt waits `base` seconds, then 2·base, 4·base, … up to `cap`.
    A key's failures are forgotten `forget` seconds after its wait ended.
    """

    def __init__(
        self,
        free: int,
        base: float = 1.0,
        cap: float = 900.0,
        forget: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ):
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.clock, self.max_keys = clock, max_keys
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()  # Streamlit runs each browser session in its own thread

    def _delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.base * 2.0 ** (failures - self.free), self.cap)

    def _live(self, key: str, now: float) -> _Record | None:
        rec = self._records.get(key)
        if rec is not None and now > rec.last + self._delay(rec.failures) + self.forget:
            del self._records[key]
            return None
        return rec

    def wait(self, key: str) -> float:
        """Seconds before an attempt for `key` may be checked; 0 when it may be checked now."""
        with self._lock:
            now = self.clock()
            rec = self._live(key, now)
            return 0.0 if rec is None else max(0.0, rec.last + self._delay(rec.failures) - now)

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            rec = self._live(key, now) or self._records.setdefault(key, _Record())
            rec.failures += 1
            rec.last = now
            if len(self._records) > self.max_keys:
                self._prune(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _prune(self, now: float) -> None:
        """Bound the memory a stream of made-up logins can take: drop forgotten keys, then the oldest."""
        for key in list(self._records):
            self._live(key, now)
        if len(self._records) > self.max_keys:
            oldest = sorted(self._records, key=lambda k: self._records[k].last)
            for key in oldest[: len(self._records) - self.max_keys]:
                del self._records[key]


@dataclass
class LoginGuard:
    """The two back-offs the login form applies: per login and per client address."""

    logins: Throttle
    addresses: Throttle

    @classmethod
    def default(cls) -> LoginGuard:
        # A person mistypes a few times; an address may be shared by a team (NAT, a proxy), so it
        # gets more free failures before it has to wait.
        return cls(Throttle(free=5), Throttle(free=20))

    def wait(self, login: str, address: str) -> float:
        return max(self.logins.wait(login), self.addresses.wait(address))

    def failed(self, login: str, address: str) -> None:
        self.logins.failed(login)
        self.addresses.failed(address)

    def succeeded(self, login: str) -> None:
        # The address keeps its count: one valid account must not reset a guesser's back-off.
        self.logins.succeeded(login)
