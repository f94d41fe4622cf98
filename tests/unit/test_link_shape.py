"""The link estimate and the readahead shape it calls for, as pure arithmetic (no I/O)."""

from __future__ import annotations

import pytest

from mastfs.cache.readahead import LATENCY_SHARE, SHAPE_SLACK, Policy, Shape, Stream, shape_for
from mastfs.link import MIN_RATE_BODY, WINDOW, Link, LinkEstimate

MiB = 1 << 20
BS = MiB
INFLIGHT = 48 * MiB  # the default readahead share of the memory budget
POLICY = Policy(BS, readahead_blocks=64, request_blocks=8)


def shape(rtt: float, rate: float, **overrides: int) -> Shape:
    options = dict(
        block_size=BS, request_blocks=8, parallel=4, parallel_max=24, inflight_max=INFLIGHT
    )
    options.update(overrides)
    return shape_for(Link(rtt, rate, 1), **options)  # type: ignore[arg-type]


def modelled(s: Shape, rtt: float, rate: float) -> float:
    size = s.request_blocks * BS
    return s.parallel * size / (rtt + size / rate)


def test_no_estimate_keeps_the_defaults() -> None:
    options = dict(block_size=BS, request_blocks=8, parallel=4, parallel_max=24)
    assert shape_for(None, inflight_max=INFLIGHT, **options) == Shape(8, 4)  # type: ignore[arg-type]


def test_loopback_keeps_four_large_requests_topped_up_by_half_windows() -> None:
    got = shape(rtt=0.0003, rate=1.5e9)
    assert (got.request_blocks, got.parallel, got.refill) == (8, 4, None)
    # Even a loaded loopback (300 MB/s per connection) reaches the target with four.
    got = shape(rtt=0.0005, rate=3e8)
    assert (got.request_blocks, got.parallel, got.refill) == (8, 4, None)
    # A very loaded one (the CPU, not the link, makes 50 MB/s): more would not help.
    assert shape(rtt=0.0005, rate=5e7) == Shape(8, 4)


def test_a_rate_capped_long_link_gets_many_small_requests_within_the_memory() -> None:
    rtt, rate = 0.08, 25e6
    got = shape(rtt, rate)
    assert got.request_blocks < 8 and got.parallel > 4
    assert got.parallel * got.request_blocks * BS <= INFLIGHT
    assert got.parallel <= 24 and got.refill == got.request_blocks
    # Four 8 MiB requests (the old fixed shape) bring 81 MB/s; this one over three times that.
    assert modelled(got, rtt, rate) > 3 * modelled(Shape(8, 4), rtt, rate)


def test_a_long_link_without_a_cap_keeps_large_requests_and_adds_some() -> None:
    rtt, rate = 0.08, 1.5e9
    got = shape(rtt, rate)
    assert got.request_blocks == 8
    assert got.parallel == INFLIGHT // (8 * MiB)  # as many as the memory allows
    assert got.refill == 8


def test_the_memory_and_the_connection_caps_hold() -> None:
    got = shape(0.2, 5e6, parallel_max=10)
    assert got.parallel <= 10
    got = shape(0.2, 5e6, inflight_max=8 * MiB)
    assert got.parallel * got.request_blocks * BS <= 8 * MiB


# Links whose round trip matters (a shorter one keeps the defaults, whatever the model says).
LONG_LINKS = [
    (rtt, rate)
    for rtt in (0.0001, 0.01, 0.08, 0.3)
    for rate in (5e6, 25e6, 2.5e8, 2e9)
    if rtt >= LATENCY_SHARE * 8 * MiB / rate
]


@pytest.mark.parametrize(("rtt", "rate"), LONG_LINKS)
def test_no_allowed_shape_is_modelled_much_faster(rtt: float, rate: float) -> None:
    got = shape(rtt, rate)
    best = max(
        min(1e9, modelled(Shape(blocks, count), rtt, rate))
        for blocks in range(1, 9)
        for count in range(4, 25)
        if count * blocks * BS <= INFLIGHT
    )
    assert min(1e9, modelled(got, rtt, rate)) * SHAPE_SLACK >= best


def test_refill_by_one_request_tops_up_as_soon_as_one_is_consumed() -> None:
    stream = Stream(next_offset=0, run=BS, window=24, block=1, issued=26)
    wan = Shape(2, 12, refill=2)
    assert POLICY.plan(stream, 2 * BS, 1000 * MiB, cap=24, shape=wan) is None
    stream.issued = 24  # 22 blocks ahead of the reader: one request's worth is missing
    plan = POLICY.plan(stream, 2 * BS, 1000 * MiB, cap=24, shape=wan)
    assert plan is not None and all(len(run) <= 2 for run in plan.runs)
    # The default shape waits for half the window.
    assert POLICY.plan(stream, 2 * BS, 1000 * MiB, cap=24) is None


def test_a_sequential_miss_runs_to_the_end_of_the_shapes_request() -> None:
    assert POLICY.run_end(9, 1000 * MiB, lambda index: True, request_blocks=2) == 10
    assert POLICY.run_end(8, 1000 * MiB, lambda index: True, request_blocks=2) == 10


def test_the_estimate_needs_a_long_enough_body_and_follows_the_link() -> None:
    link = LinkEstimate()
    link.record(0.08, 4096, 0.001)
    assert link.current() is None  # a round trip, but no rate yet
    link.record(0.08, 8 * MiB, 8 * MiB / 25e6)
    first = link.current()
    assert first is not None and first.rtt == pytest.approx(0.08)
    assert first.rate == pytest.approx(25e6) and first.samples == 2
    for _ in range(WINDOW):
        link.record(0.0003, MIN_RATE_BODY, MIN_RATE_BODY / 1.5e9)
    moved = link.current()
    assert moved is not None and moved.rtt == pytest.approx(0.0003)
    assert moved.rate == pytest.approx(1.5e9)
    link.record(-1.0, 8 * MiB, 1.0)  # nonsense is ignored
    assert link.current() == moved


def test_one_slow_answer_does_not_make_a_short_link_look_long() -> None:
    link = LinkEstimate()
    link.record(7.0, 8 * MiB, 1.0)  # a server generating the file first
    for _ in range(3):
        link.record(0.0004, 8 * MiB, 8 * MiB / 1e9)
    got = link.current()
    assert got is not None and got.rtt == pytest.approx(0.0004)
    assert got.rate == pytest.approx(1e9)


def test_a_long_links_window_spans_its_requests_and_what_arrived() -> None:
    wan = Shape(2, 24, refill=2)
    assert wan.window == 72 and Shape(8, 4).window is None
    idle = Stream(next_offset=0)
    # In flight: the budget's 48 MiB; the window half as much again, for arrived blocks.
    assert POLICY.window_cap(idle, streams_fetching=0, budget=INFLIGHT, shape=wan) == 72
    assert POLICY.window_cap(idle, streams_fetching=2, budget=INFLIGHT, shape=wan) == 24
    assert POLICY.window_cap(idle, streams_fetching=0, budget=INFLIGHT, shape=Shape(8, 4)) == 48
