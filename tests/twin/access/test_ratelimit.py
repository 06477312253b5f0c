"""The token-bucket limiter: bursts, refill, retry-after, bounded memory, threads, and a property over any times."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import OptionError, TwinError
from twin.access.ratelimit import RateLimiter


def test_burst_then_refused_then_refilled():
    limiter = RateLimiter(rate_per_s=2.0, burst=4.0)
    assert [limiter.allow("a", now=10.0) for _ in range(5)] == [True] * 4 + [False]
    assert limiter.retry_after("a", now=10.0) == pytest.approx(0.5)
    assert not limiter.allow("a", now=10.25)
    assert limiter.allow("a", now=10.5)
    assert not limiter.allow("a", now=10.5)
    # Long idle refills only up to the burst.
    assert [limiter.allow("a", now=1000.0) for _ in range(5)] == [True] * 4 + [False]


def test_keys_are_independent():
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0)
    assert limiter.allow("a", now=0.0)
    assert not limiter.allow("a", now=0.0)
    assert limiter.allow("b", now=0.0)
    assert limiter.retry_after("c", now=0.0) == 0.0


def test_cost_and_retry_after():
    limiter = RateLimiter(rate_per_s=1.0, burst=3.0)
    assert limiter.allow("a", now=0.0, cost=2.5)
    assert not limiter.allow("a", now=0.0, cost=1.0)  # a refused request takes nothing
    assert limiter.allow("a", now=0.0, cost=0.5)
    assert limiter.retry_after("a", now=0.0, cost=2.0) == pytest.approx(2.0)
    assert limiter.retry_after("a", now=5.0) == 0.0
    assert limiter.retry_after("a", cost=4.0) == math.inf
    assert not limiter.allow("a", now=100.0, cost=4.0)


def test_clock_going_back_adds_nothing():
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0)
    assert limiter.allow("a", now=100.0)
    assert not limiter.allow("a", now=50.0)
    assert not limiter.allow("a", now=100.5)
    assert limiter.allow("a", now=101.0)


def test_default_clock():
    limiter = RateLimiter(rate_per_s=0.001, burst=2.0)
    assert limiter.allow("a") and limiter.allow("a") and not limiter.allow("a")
    assert 0 < limiter.retry_after("a") <= 1000.0


def test_memory_is_bounded_least_recently_used_go_first():
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0, max_keys=3)
    for key in "abc":
        assert limiter.allow(key, now=0.0)
    assert not limiter.allow("a", now=0.0)  # touches "a": now "b" is the oldest
    assert limiter.allow("d", now=0.0)
    assert len(limiter) == 3 and limiter.evicted == 1
    assert not limiter.allow("a", now=0.0)  # kept, still empty
    assert limiter.allow("b", now=0.0)  # dropped, so fresh again
    for k in range(10_000):
        limiter.allow(f"k{k}", now=0.0)
    assert len(limiter) == 3


def test_forget():
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0)
    assert limiter.allow("a", now=0.0) and not limiter.allow("a", now=0.0)
    limiter.forget("a")
    limiter.forget("never-seen")
    assert limiter.allow("a", now=0.0)


@pytest.mark.parametrize("kwargs", [dict(rate_per_s=0, burst=1), dict(rate_per_s=1, burst=-1),
                                    dict(rate_per_s=math.nan, burst=1), dict(rate_per_s=1, burst=math.inf),
                                    dict(rate_per_s=1, burst=1, max_keys=0)])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(OptionError):
        RateLimiter(**kwargs)


def test_bad_calls_are_refused():
    limiter = RateLimiter(rate_per_s=1.0, burst=1.0)
    for bad in (dict(cost=-1.0), dict(cost=math.nan), dict(cost=math.inf), dict(now=math.nan)):
        with pytest.raises(TwinError):
            limiter.allow("a", **bad)


def test_threads_share_one_bucket_exactly():
    limiter = RateLimiter(rate_per_s=1e-9, burst=500.0)
    allowed = []
    start = threading.Barrier(8)

    def hammer():
        start.wait()
        allowed.append(sum(limiter.allow("shared", now=0.0) for _ in range(1000)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(0.01, 1000.0), burst=st.floats(0.5, 50.0),
       steps=st.lists(st.tuples(st.floats(-5.0, 5.0), st.floats(0.0, 3.0), st.sampled_from("ab")),
                      min_size=1, max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(rate, burst, steps):
    """Over every stretch [t_i, t_j] of any sequence of times (some going back), a key is allowed at
    most burst + rate * (latest time - earliest time seen in the stretch)."""
    limiter = RateLimiter(rate_per_s=rate, burst=burst, max_keys=10)
    now = 1000.0
    history = {"a": [], "b": []}  # per key: (time, cost allowed)
    for dt, cost, key in steps:
        now += dt
        ok = limiter.allow(key, now=now, cost=cost)
        history[key].append((now, cost if ok else 0.0))
    for events in history.values():
        for i in range(len(events)):
            taken, lo, hi = 0.0, math.inf, -math.inf
            for t, c in events[i:]:
                taken += c
                lo, hi = min(lo, t), max(hi, t)
                assert taken <= burst + rate * (hi - lo) + 1e-9 * (1 + taken)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.1, 100.0), burst=st.integers(1, 20), wait=st.floats(0.0, 10.0))
def test_retry_after_is_exactly_when_allowed_again(rate, burst, wait):
    limiter = RateLimiter(rate_per_s=rate, burst=float(burst))
    while limiter.allow("k", now=0.0):
        pass
    after = limiter.retry_after("k", now=wait)
    if after > 1e-9:
        assert not limiter.allow("k", now=wait)
        assert limiter.allow("k", now=wait + after + 1e-9)
    else:
        assert limiter.allow("k", now=wait)
