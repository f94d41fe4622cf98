"""Resume, don't restart; and a stalled body is abandoned, not waited for (issue 13).

A body cut part-way keeps the bytes already received: the retry asks only for the rest, in
smaller requests after each cut. A body that stalls or trickles below the low-speed limit is
abandoned and retried on a fresh connection, well within the fetcher's deadline.
"""

from __future__ import annotations

import trio

from mastfs.fetch import Fetcher, LowSpeed, RetryPolicy
from tests.support.sim import MiB, Sim

HANG = 60  # a hang detector, far above what the reads under test need


async def test_a_server_that_cuts_every_body_still_delivers_the_range(sim: Sim) -> None:
    f = sim.pick(min_size=20 * MiB, max_size=200 * MiB, index=2)
    sim.faults(reset_after=3 * MiB, scope=f.uri)
    fetcher = Fetcher(sim.url, None, RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05))
    try:
        sim.reset_stats()
        with trio.fail_after(HANG):
            pieces, _ = await fetcher.get_range_split(f.uri, 0, 8 * MiB, MiB)
        assert b"".join(pieces) == sim.expected(f.uri, 0, 8 * MiB)
        # Each request went on from where the cut left it: every byte received once.
        assert fetcher.counters["bytes"] == 8 * MiB
        assert sim.gets(f.uri) >= 3
    finally:
        sim.clear_faults()
        fetcher.close()


async def test_repeated_cuts_shrink_the_requests_down_to_one_piece(sim: Sim) -> None:
    f = sim.pick(min_size=20 * MiB, max_size=200 * MiB, index=3)
    # Every body stops after 1.5 MiB: 8 MiB, then 4, 2, 1 MiB requests, 1 MiB ones succeed.
    sim.faults(reset_after=3 * MiB // 2, scope=f.uri)
    fetcher = Fetcher(sim.url, None, RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.05))
    try:
        with trio.fail_after(HANG):
            pieces, _ = await fetcher.get_range_split(f.uri, MiB, 9 * MiB, MiB)
        assert b"".join(pieces) == sim.expected(f.uri, MiB, 8 * MiB)
    finally:
        sim.clear_faults()
        fetcher.close()


async def test_a_stalled_body_is_abandoned_and_retried_on_a_fresh_connection(sim: Sim) -> None:
    f = sim.pick(min_size=20 * MiB, max_size=200 * MiB, index=4)
    # One stall of 40 s after 1 MiB; the fetcher's deadline is 8 s (low-speed window 2 s).
    sim.faults(stall_after=MiB, stall_seconds=40, scope=f.uri, max_faults=1)
    policy = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, deadline=8.0)
    assert LowSpeed.within(policy.deadline).window == 2.0
    fetcher = Fetcher(sim.url, None, policy)
    try:
        with trio.fail_after(HANG):
            pieces, _ = await fetcher.get_range_split(f.uri, 0, 4 * MiB, MiB)
        assert b"".join(pieces) == sim.expected(f.uri, 0, 4 * MiB)
        assert fetcher.counters["retries"] >= 1
    finally:
        sim.clear_faults()
        fetcher.close()


def test_the_low_speed_window_fits_the_deadline() -> None:
    assert LowSpeed.within(60).window == 10.0
    assert LowSpeed.within(5).window == 1.25
    assert LowSpeed.within(1).window == 1.0


async def test_cuts_that_bring_bytes_are_not_counted_as_failed_attempts(sim: Sim) -> None:
    """Every body cut after 300 kB, an 8 MiB range, three attempts allowed: each cut brings
    bytes the next request goes on from, so the range arrives (~28 requests) within the
    deadline, every byte received once. (The bandwidth cap lets the client read what was sent
    before the reset: a reset drops what the receiver has not read yet.)"""
    f = sim.pick(min_size=20 * MiB, max_size=200 * MiB, index=5)
    sim.faults(reset_after=300_000, bandwidth=20_000_000, scope=f.uri)
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=30.0)
    fetcher = Fetcher(sim.url, None, policy)
    try:
        with trio.fail_after(HANG):
            pieces, _ = await fetcher.get_range_split(f.uri, 0, 8 * MiB, MiB)
        assert b"".join(pieces) == sim.expected(f.uri, 0, 8 * MiB)
        assert fetcher.counters["bytes"] == 8 * MiB
        assert sim.gets(f.uri) > policy.attempts
    finally:
        sim.clear_faults()
        fetcher.close()
