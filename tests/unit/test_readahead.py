"""The readahead policy and block arithmetic, as pure functions of offsets (no I/O)."""

from __future__ import annotations

import pytest

from mastfs.cache.blocks import Layout
from mastfs.cache.readahead import BACKWARD_SLACK, MAX_STREAMS, Policy, Stream, Streams

MiB = 1 << 20
BS = MiB
# 64 MiB readahead in 8 MiB requests, as the defaults.
POLICY = Policy(BS, readahead_blocks=64, request_blocks=8)
BUDGET = 48 * MiB


def read_sequentially(streams: Streams, uri: str, upto: int, step: int = 128 << 10) -> Stream:
    stream = None
    for offset in range(0, upto, step):
        stream = streams.follow(uri, offset, offset + step)
    assert stream is not None
    return stream


def test_a_first_read_starts_a_stream_and_the_next_continues_it() -> None:
    streams = Streams(BS)
    assert streams.follow("a", 0, 4096) is None
    stream = streams.follow("a", 4096, 8192)
    assert stream is not None and stream.run == 4096 and stream.next_offset == 8192


def test_reads_far_away_start_streams_of_their_own_up_to_a_bound() -> None:
    streams = Streams(BS)
    for i in range(MAX_STREAMS + 2):
        assert streams.follow("a", i * 100 * MiB, i * 100 * MiB + 4096) is None
    # The oldest streams were forgotten: a read continuing the first starts anew.
    assert streams.follow("a", 4096, 8192) is None
    # The newest is still followed.
    last = (MAX_STREAMS + 1) * 100 * MiB
    assert streams.follow("a", last + 4096, last + 8192) is not None


def test_out_of_order_reads_within_the_slack_continue_a_stream() -> None:
    streams = Streams(BS)
    read_sequentially(streams, "a", 10 * MiB)
    assert streams.follow("a", 10 * MiB - BACKWARD_SLACK * BS, 10 * MiB - 3 * BS) is not None
    assert streams.follow("a", 0, 4096) is None  # too far back: a new stream


def test_continues_needs_the_front_and_the_run() -> None:
    streams = Streams(BS)
    read_sequentially(streams, "a", 4 * MiB)
    assert streams.continues("a", 4 * MiB)
    assert streams.continues("a", 4 * MiB, min_run=BS // 2)
    assert not streams.continues("a", 4 * MiB, min_run=8 * MiB)
    assert not streams.continues("a", 20 * MiB)
    assert not streams.continues("b", 0)


def test_no_plan_before_half_a_block_of_sequential_reads() -> None:
    stream = Stream(next_offset=64 << 10, run=64 << 10)
    assert POLICY.plan(stream, 64 << 10, 100 * MiB, cap=64) is None


def test_the_window_doubles_per_new_block_up_to_its_cap() -> None:
    stream = Stream(next_offset=0, run=BS)
    windows = []
    for block in range(1, 10):
        POLICY.plan(stream, block * BS, 1000 * MiB, cap=16)
        windows.append(stream.window)
    assert windows == [1, 2, 4, 8, 16, 16, 16, 16, 16]


def test_wide_windows_ask_for_whole_aligned_requests() -> None:
    stream = Stream(next_offset=0, run=BS, window=32, block=0)
    plan = POLICY.plan(stream, BS, 1000 * MiB, cap=64)
    assert plan is not None
    assert plan.start == 1
    assert all(len(run) <= 8 for run in plan.runs)
    # After the first (partial) run, every run starts on an 8-block boundary.
    assert all(run.start % 8 == 0 for run in plan.runs[1:])
    assert plan.runs[-1].stop % 8 == 0
    assert [r.start for r in plan.runs] == sorted(r.start for r in plan.runs)


def test_the_plan_stops_at_the_end_of_the_file() -> None:
    stream = Stream(next_offset=0, run=BS, window=32, block=0)
    plan = POLICY.plan(stream, BS, 5 * MiB + 7, cap=64)
    assert plan is not None and plan.runs[-1].stop == 6


def test_a_window_more_than_half_ahead_is_left_alone() -> None:
    stream = Stream(next_offset=0, run=BS, window=16, block=1, issued=20)
    assert POLICY.plan(stream, 2 * BS, 1000 * MiB, cap=16) is None
    stream.issued = 10
    assert POLICY.plan(stream, 2 * BS, 1000 * MiB, cap=16) is not None


def test_streams_share_the_budget_but_keep_one_request() -> None:
    idle = Stream(next_offset=0)
    assert POLICY.window_cap(idle, streams_fetching=0, budget=BUDGET) == 48
    assert POLICY.window_cap(idle, streams_fetching=2, budget=BUDGET) == 16
    assert POLICY.window_cap(idle, streams_fetching=20, budget=BUDGET) == 8
    busy = Stream(next_offset=0, inflight=MiB)
    assert POLICY.window_cap(busy, streams_fetching=1, budget=BUDGET) == 48
    assert POLICY.window_cap(idle, streams_fetching=0, budget=1 << 40) == 64


def test_a_sequential_miss_runs_to_the_end_of_its_request() -> None:
    assert POLICY.run_end(9, 1000 * MiB, lambda index: True) == 16
    assert POLICY.run_end(9, 12 * MiB, lambda index: True) == 12
    assert POLICY.run_end(9, 1000 * MiB, lambda index: index < 12) == 12
    assert POLICY.run_end(15, 1000 * MiB, lambda index: True) == 16


def test_layout_arithmetic() -> None:
    layout = Layout(BS)
    assert layout.count(0) == 0 and layout.count(1) == 1 and layout.count(BS + 1) == 2
    assert layout.length(1, BS + 10) == 10 and layout.length(0, BS + 10) == BS
    assert layout.span(BS - 1, BS + 1) == (0, 1)
    blocks = {0: bytes(range(256)) * 4096, 1: b"xyz"}
    assert layout.assemble(blocks, 0, 1, BS - 2, BS + 2) == blocks[0][-2:] + b"xy"
    view = layout.assemble({0: memoryview(bytearray(b"abcdef"))}, 0, 0, 1, 3)
    assert isinstance(view, memoryview) and view.readonly and bytes(view) == b"bc"
    with pytest.raises(ValueError, match="below"):
        Layout(512)
