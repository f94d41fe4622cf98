"""The memory tier: an LRU of recent blocks under a byte limit.

Hot blocks live here: the kernel's 128 KiB reads of one block are served without touching the
disk, and readahead waits here until the reader (or the kernel, after a hand-over) has it.
"""

from __future__ import annotations

from collections import OrderedDict

from mastfs.cache.blocks import Block

# (dataURI, version identity, block index)
Key = tuple[str, str, int]


class MemoryTier:
    """LRU of blocks by `Key`; `size` bytes held, never more than `limit` after a `put`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._blocks: OrderedDict[Key, Block] = OrderedDict()

    def get(self, key: Key) -> Block | None:
        data = self._blocks.get(key)
        if data is not None:
            self._blocks.move_to_end(key)
        return data

    def __contains__(self, key: Key) -> bool:
        return key in self._blocks

    def put(self, key: Key, data: Block) -> None:
        if len(data) > self.limit:
            return
        old = self._blocks.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._blocks[key] = data
        self.size += len(data)
        while self.size > self.limit:
            _, evicted = self._blocks.popitem(last=False)
            self.size -= len(evicted)

    def drop(self, uri: str) -> None:
        """Forget every block of a product (its contents changed)."""
        for key in [k for k in self._blocks if k[0] == uri]:
            self.size -= len(self._blocks.pop(key))
