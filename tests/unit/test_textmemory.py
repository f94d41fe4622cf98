"""`TextMemory`: texts built ahead of the readers are never dropped for room; read ones are, oldest
first."""

from __future__ import annotations

from mastfs.textmemory import TextMemory


def test_texts_built_ahead_stay_until_read_however_many_read_ones_come() -> None:
    memory = TextMemory(read_limit=100, ahead_limit=100)
    for i in range(4):
        memory.put(f"ahead{i}", "v1", b"a" * 20, ahead=True)
    for i in range(20):  # far more read texts than the read room holds
        memory.put(f"read{i}", "v1", b"r" * 20, ahead=False)
    assert all(memory.get(f"ahead{i}") == ("v1", b"a" * 20) for i in range(4))
    assert memory.get("read0") is None and memory.get("read19") is not None
    assert memory.stats() == {"texts": 9, "text_bytes": 180, "texts_ahead": 4}


def test_the_builders_room_fills_and_a_reader_taking_a_text_frees_it() -> None:
    memory = TextMemory(read_limit=100, ahead_limit=40)
    for i in range(4):
        memory.put(f"u{i}", "v1", b"x" * 10, ahead=True)
    assert memory.ahead_full
    memory.taken("u0")
    assert not memory.ahead_full
    assert memory.get("u0") == ("v1", b"x" * 10)  # now kept as a read text
    assert memory.stats()["texts_ahead"] == 3


def test_read_texts_are_dropped_least_recently_used_first() -> None:
    memory = TextMemory(read_limit=40, ahead_limit=40)
    for name in ("a", "b", "c", "d"):
        memory.put(name, "v1", b"x" * 10, ahead=False)
    memory.taken("a")  # read again: the most recent now
    memory.put("e", "v1", b"x" * 10, ahead=False)
    assert memory.get("b") is None
    assert all(memory.get(n) is not None for n in ("a", "c", "d", "e"))


def test_a_new_version_replaces_the_old_text_wherever_it_was_kept() -> None:
    memory = TextMemory(read_limit=100, ahead_limit=100)
    memory.put("u", "v1", b"old", ahead=True)
    memory.put("u", "v2", b"newer", ahead=False)
    assert memory.get("u") == ("v2", b"newer")
    assert memory.stats() == {"texts": 1, "text_bytes": 5, "texts_ahead": 0}


def test_a_text_too_large_for_its_room_is_not_kept() -> None:
    memory = TextMemory(read_limit=100, ahead_limit=100)
    memory.put("big", "v1", b"x" * 26, ahead=True)
    memory.put("big2", "v1", b"x" * 26, ahead=False)
    assert memory.get("big") is None and memory.get("big2") is None
