"""The warm pool's and hot sessions' decisions, over arbitrary arrival patterns."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from clinvk.adapters.backends.pool_policy import PoolLimits, PoolPolicy, hot_evictions
from tests.strategies import pool_arrivals

limits_strategy = st.builds(
    lambda floor, extra, shrink, pace: PoolLimits(
        floor=floor, ceiling=floor + extra, shrink_secs=shrink, pace_secs=pace
    ),
    st.integers(0, 3),
    st.integers(0, 4),
    st.sampled_from([1.0, 10.0, 60.0]),
    st.sampled_from([0.0, 0.5, 2.0]),
)


@given(limits=limits_strategy, arrivals=pool_arrivals, capacity=st.none() | st.integers(0, 8))
def test_the_pool_never_holds_more_than_its_ceiling_and_returns_to_its_floor(
    limits, arrivals, capacity
):
    """Whatever the arrivals, ready processes stay within the ceiling (and the admission
    capacity), the target within [floor, ceiling], and a quiet pool shrinks to its floor."""
    policy = PoolPolicy(limits)
    ready, now = min(limits.floor, limits.ceiling), 0.0
    for gap, first_text, _ in arrivals:
        now += gap
        ready -= policy.surplus(now, ready=ready)
        policy.on_request(now, ready=ready)
        if ready:
            ready -= 1
        now += first_text
        ready += policy.starts(now, ready=ready, capacity=capacity)
        assert limits.floor <= policy.target <= limits.ceiling
        assert 0 <= ready <= limits.ceiling
        if capacity is not None:
            assert ready <= max(capacity, min(limits.floor, limits.ceiling))
    now += limits.shrink_secs * (limits.ceiling + 1)
    ready -= policy.surplus(now, ready=ready)
    assert policy.target == limits.floor
    assert ready <= limits.floor


@given(limits=limits_strategy)
def test_starts_are_paced_one_at_a_time(limits):
    """However far below its target, the pool starts one process per call and never two
    within `pace_secs`."""
    policy = PoolPolicy(msgspec.structs.replace(limits, shrink_secs=1000.0))
    for _ in range(limits.ceiling):
        policy.on_request(0.0, ready=0)
    assert policy.starts(1.0, ready=0, capacity=None) == (1 if policy.target else 0)
    if limits.pace_secs > 0 and policy.target:
        assert policy.starts(1.0 + limits.pace_secs / 2, ready=0, capacity=None) == 0
        assert policy.starts(1.0 + limits.pace_secs, ready=0, capacity=None) == 1


def test_misses_grow_the_target_and_quiet_time_shrinks_it_step_by_step():
    """Each request that finds the pool empty adds one to the target; each `shrink_secs`
    without one takes one away, down to the floor."""
    policy = PoolPolicy(PoolLimits(floor=1, ceiling=3, shrink_secs=10))
    policy.on_request(0.0, ready=0)
    policy.on_request(1.0, ready=0)
    policy.on_request(2.0, ready=0)
    assert policy.target == 3
    policy.on_request(3.0, ready=1)  # a hit: no growth, and no shrink yet
    assert policy.target == 3
    assert policy.surplus(12.5, ready=3) == 1
    assert policy.surplus(22.5, ready=2) == 1
    assert policy.surplus(1000.0, ready=1) == 0 and policy.target == 1


def test_a_busy_machine_keeps_the_floor_but_does_not_grow_the_pool():
    """With less than min_idle_cores idle, the pool still replaces its floor but starts no
    process beyond it; with idle CPU (or no reading) it grows."""
    policy = PoolPolicy(PoolLimits(floor=1, ceiling=3, pace_secs=0.0))
    policy.on_request(0.0, ready=0)
    policy.on_request(0.0, ready=0)
    assert policy.target == 3
    assert policy.starts(1.0, ready=0, capacity=None, idle_cores=0.2) == 1  # the floor
    assert policy.starts(2.0, ready=1, capacity=None, idle_cores=0.2) == 0  # growth waits
    assert policy.starts(3.0, ready=1, capacity=None, idle_cores=1.5) == 1
    assert policy.starts(4.0, ready=2, capacity=None, idle_cores=None) == 1


def test_a_process_is_handed_out_only_alive_and_fresh():
    """A dead process, or one that waited longer than idle_secs, never serves a request."""
    policy = PoolPolicy(PoolLimits(floor=1, ceiling=1, idle_secs=300))
    assert policy.usable(10.0, born=5.0, alive=True)
    assert not policy.usable(10.0, born=5.0, alive=False)
    assert not policy.usable(400.0, born=5.0, alive=True)


@given(
    used=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.floats(0, 1000), max_size=6
    ),
    now=st.floats(0, 1000),
    max_hot=st.integers(0, 6),
    idle=st.sampled_from([0.0, 10.0, 120.0, math.inf]),
)
def test_hot_evictions_keep_at_most_max_and_the_most_recent(used, now, max_hot, idle):
    """After evictions at most `max_hot` sessions stay, none idle too long, and every one
    kept was used more recently than every one ended for room."""
    ended = hot_evictions(used, now, max_hot=max_hot, idle_secs=idle)
    kept = {k: t for k, t in used.items() if k not in ended}
    assert len(ended) == len(set(ended))
    assert len(kept) <= max_hot
    assert all(now - t <= idle for t in kept.values())
    for k in ended:
        if now - used[k] <= idle:
            assert all(used[k] <= t for t in kept.values())
