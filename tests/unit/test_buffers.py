"""buffers.py: page-aligned buffers, reused only once no view of one is left."""

from __future__ import annotations

import threading

import pytest

from mastfs.buffers import BufferPool, is_page_aligned

MiB = 1 << 20


def test_a_buffer_is_reused_only_once_every_view_of_it_is_released() -> None:
    pool = BufferPool(keep_bytes=64 * MiB)
    first = pool.take(3 * MiB + 5)
    assert len(first) == 3 * MiB + 5 and not first.readonly
    first[:] = b"\x01" * len(first)
    block = first[MiB : 2 * MiB].toreadonly()  # what the cache keeps of a range response
    del first
    # A view is still alive: the next body must get other memory, or it would overwrite it.
    second = pool.take(3 * MiB + 5)
    second[:] = b"\x02" * len(second)
    assert pool.reused == 0
    assert bytes(block) == b"\x01" * MiB
    del block, second
    # Both are free now: the next bodies of that size reuse them instead of faulting new pages.
    again = [pool.take(3 * MiB + 5), pool.take(3 * MiB + 5)]
    assert (pool.created, pool.reused) == (2, 2)
    del again


def test_buffers_are_page_aligned_and_the_free_list_is_bounded() -> None:
    pool = BufferPool(keep_bytes=8 * MiB)
    views = [pool.take(8 * MiB) for _ in range(3)]
    assert all(is_page_aligned(view) for view in views)
    del views
    # Only one of the three released buffers fits under keep_bytes.
    again = [pool.take(8 * MiB) for _ in range(3)]
    assert (pool.created, pool.reused) == (5, 1)
    del again


def test_sizes_are_reused_by_pages_and_empty_buffers_are_refused() -> None:
    pool = BufferPool(keep_bytes=8 * MiB)
    del_me = pool.take(4096 * 3 - 100)
    del del_me
    # Same number of pages: the same mapping, sized to what was asked.
    view = pool.take(4096 * 2 + 1)
    assert (pool.created, pool.reused, len(view)) == (1, 1, 4096 * 2 + 1)
    with pytest.raises(ValueError, match="must be positive"):
        pool.take(0)


def test_the_oldest_idle_buffers_make_room_for_the_newest() -> None:
    # Small odd sizes released earlier (partial reads) must not keep a reader's runs from
    # being reused.
    pool = BufferPool(keep_bytes=8 * MiB)
    small = [pool.take(68 * 1024) for _ in range(100)]
    del small
    run = pool.take(8 * MiB)
    del run
    again = pool.take(8 * MiB)
    assert pool.reused == 1
    del again


def test_releasing_a_view_never_waits_for_the_pool() -> None:
    # The last view of a buffer may go in any thread at any moment, also while the pool's lock
    # is held (by another thread, or by a garbage collection inside `take`): that must not
    # block, and the buffer must still come back.
    pool = BufferPool(keep_bytes=8 * MiB)
    view = pool.take(MiB)
    released = threading.Event()

    def release() -> None:
        nonlocal view
        del view
        released.set()

    with pool._lock:
        worker = threading.Thread(target=release)
        worker.start()
        assert released.wait(timeout=5), "releasing a view waited for the pool's lock"
    worker.join()
    again = pool.take(MiB)
    assert (pool.created, pool.reused) == (1, 1)
    del again


def test_odd_lengths_share_their_page_count_array_type() -> None:
    # ctypes remembers every array type it makes: one per byte length would grow without bound
    # over a mount (every product's last run has a length of its own).
    pool = BufferPool(keep_bytes=0)
    views = [pool.take(4096 * 3 - odd) for odd in (1, 7, 100, 4000)]
    assert [len(v) for v in views] == [4096 * 3 - odd for odd in (1, 7, 100, 4000)]
    assert len({type(v.obj) for v in views}) == 1
