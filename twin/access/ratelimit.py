"""A small thread-safe token-bucket rate limiter, one bucket per key, with bounded memory.

Used for sign-in attempts (per user and address, per address) and for the
intake routes (per API key). Pure Python, no I/O; the clock is
:func:`time.monotonic` unless the caller passes ``now``.

Examples
--------
>>> limiter = RateLimiter(rate_per_s=1.0, burst=2.0)
>>> [limiter.allow("10.0.0.1", now=0.0) for _ in range(3)]
[True, True, False]
>>> limiter.retry_after("10.0.0.1", now=0.0)
1.0
>>> limiter.allow("10.0.0.1", now=1.0)
True
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict

from twin.errors import OptionError

log = logging.getLogger(__name__)


class RateLimiter:
    """Token buckets keyed by a string: at most ``burst`` at once, refilled at ``rate_per_s``.

    Each key starts with a full bucket of ``burst`` tokens. A request of
    ``cost`` tokens is allowed when the bucket holds at least ``cost``, and
    then takes them. Buckets refill continuously at ``rate_per_s`` tokens a
    second, up to ``burst``. Over any stretch of time of length ``t`` a key
    is therefore allowed at most ``burst + rate_per_s * t`` tokens' worth of
    requests.

    Parameters
    ----------
    rate_per_s : float
        Tokens added to each bucket per second (the sustained rate); > 0.
    burst : float
        Capacity of each bucket (the most allowed at once); > 0.
    max_keys : int, optional
        Most buckets kept. When a new key would exceed it, the least recently
        used buckets are dropped (a dropped key starts again with a full bucket,
        so set this well above the number of keys active within
        ``burst / rate_per_s`` seconds). Default 100 000.

    Raises
    ------
    twin.errors.OptionError
        If a parameter is not a finite positive number.

    Notes
    -----
    Times that go backwards (a ``now`` earlier than one seen before for the
    key) add no tokens; they never let more through.
    """

    def __init__(self, *, rate_per_s: float, burst: float, max_keys: int = 100_000) -> None:
        for name, value in (("rate_per_s", rate_per_s), ("burst", burst)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise OptionError(f"RateLimiter {name}={value!r}: expected a finite number > 0.")
        if not isinstance(max_keys, int) or max_keys < 1:
            raise OptionError(f"RateLimiter max_keys={max_keys!r}: expected an integer >= 1.")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # key -> [tokens, time of last refill]; ordered from least to most recently used.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._evicted = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)

    @property
    def evicted(self) -> int:
        """Number of buckets dropped so far to stay within ``max_keys``."""
        return self._evicted

    @staticmethod
    def _now(now: float | None) -> float:
        if now is None:
            return time.monotonic()
        now = float(now)
        if math.isnan(now):
            raise OptionError("RateLimiter: now=nan; expected a time in seconds.")
        return now

    def _refilled(self, key: str, now: float) -> list[float]:
        # Caller holds the lock. Returns the key's bucket, refilled up to ``now`` and marked recently used.
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [self.burst, now]
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
                self._evicted += 1
                if self._evicted in (1, 1000) or self._evicted % 100_000 == 0:
                    log.warning("rate limiter full (%d keys): dropped %d least recently used buckets so far",
                                self.max_keys, self._evicted)
        else:
            self._buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate_per_s)
                bucket[1] = now
        return bucket

    def allow(self, key: str, *, now: float | None = None, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them.

        Parameters
        ----------
        key : str
            Who is asking (an API key's client, an address, a user and address).
        now : float, optional
            Time in seconds on a monotonic clock; :func:`time.monotonic` by default.
        cost : float, optional
            Tokens this request takes; default 1. Must be >= 0.

        Returns
        -------
        bool
            True if the request may go ahead (the tokens are taken), False if
            it is over the limit (nothing is taken).

        Raises
        ------
        twin.errors.OptionError
            If ``cost`` is negative or not a number, or ``now`` is NaN.
        """
        if not (cost >= 0) or math.isinf(cost):
            raise OptionError(f"RateLimiter.allow cost={cost!r}: expected a finite number >= 0.")
        now = self._now(now)
        with self._lock:
            bucket = self._refilled(key, now)
            if bucket[0] >= cost:
                bucket[0] -= cost
                return True
            return False

    def retry_after(self, key: str, *, now: float | None = None, cost: float = 1.0) -> float:
        """Seconds until ``key``'s bucket will hold ``cost`` tokens (0 if it does now).

        Parameters
        ----------
        key : str
            As for :meth:`allow`.
        now : float, optional
            As for :meth:`allow`.
        cost : float, optional
            Tokens the next request would take; default 1.

        Returns
        -------
        float
            Seconds to wait; ``math.inf`` if ``cost`` exceeds ``burst`` (it can
            never be allowed). For an HTTP ``Retry-After`` header, round up:
            ``math.ceil(limiter.retry_after(key))``.
        """
        if cost > self.burst:
            return math.inf
        now = self._now(now)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate_per_s)
            if tokens >= cost:
                return 0.0
            return (cost - tokens) / self.rate_per_s

    def forget(self, key: str) -> None:
        """Drop ``key``'s bucket (it starts again full), e.g. after a successful sign-in."""
        with self._lock:
            self._buckets.pop(key, None)
