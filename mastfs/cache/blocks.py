"""How a product's bytes are cut into blocks, and the sizes the cache is built around.

Block size: 1 MiB. A cold random read pays for its whole block, so FITS readers that seek from
header to header move 1 MiB per header (`fits.getheader` of a 4 GiB product: 1 MiB); the kernel
sends 128 KiB FUSE reads, so one block serves eight of them from memory; and sequential streams
do not fetch block by block but in runs of up to `DEFAULT_REQUEST_MAX`. docs/performance.md has
the measurements behind each default.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1 << 10
MiB = 1 << 20
# A block's bytes: `bytes` from disk, or a view of the buffer a range response was received into.
Block = bytes | memoryview

DEFAULT_BLOCK_SIZE = 1 * MiB
# Blocks of the header cache (`headers.py`): most FITS headers are one to three 2880-byte
# blocks, and the first block of a file usually holds two of them (docs/performance.md).
HEADER_BLOCK_SIZE = 64 * KiB
# The memory tier mostly holds readahead until the kernel has read it; half of it may be in
# flight, half of it waiting for the disk (`budget.MemoryBudget`).
DEFAULT_MEMORY_LIMIT = 96 * MiB
DEFAULT_READAHEAD_MAX = 64 * MiB
DEFAULT_REQUEST_MAX = 8 * MiB
# Readahead range requests on the network at once: at least (enough where the round trip is
# short), and at most (where it is long, `readahead.shape_for`).
DEFAULT_PARALLEL = 4
DEFAULT_PARALLEL_MAX = 24
MIN_BLOCK_SIZE = 4 * KiB
# Seconds after which an open revalidates a product with the archive (`--metadata-ttl`).
DEFAULT_METADATA_TTL = 60.0


@dataclass(frozen=True, slots=True)
class Layout:
    """Block arithmetic for one block size: every block but a product's last is whole."""

    block_size: int

    def __post_init__(self) -> None:
        if self.block_size < MIN_BLOCK_SIZE:
            raise ValueError(f"block_size {self.block_size} is below {MIN_BLOCK_SIZE} bytes")

    def count(self, file_size: int) -> int:
        """Blocks in a product of `file_size` bytes."""
        return -(-file_size // self.block_size)

    def length(self, index: int, file_size: int) -> int:
        """Bytes in block `index` of a product of `file_size` bytes."""
        return min(self.block_size, file_size - index * self.block_size)

    def span(self, offset: int, end: int) -> tuple[int, int]:
        """First and last block index of the bytes [offset, end), end > offset."""
        return offset // self.block_size, (end - 1) // self.block_size

    def start(self, index: int) -> int:
        return index * self.block_size

    def assemble(
        self, got: dict[int, Block], first: int, last: int, offset: int, end: int
    ) -> Block:
        """Bytes [offset, end) from the blocks `first`..`last` in `got`.

        Within one block, a read-only view of it (no copy: pyfuse3 copies whatever buffer it is
        given into the kernel).
        """
        bs = self.block_size
        if first == last:
            part = got[first][offset - first * bs : end - first * bs]
            return part if isinstance(part, bytes) else part.toreadonly()
        parts = []
        for index in range(first, last + 1):
            data = got[index]
            lo = max(offset - index * bs, 0)
            hi = min(end - index * bs, len(data))
            parts.append(data[lo:hi])
        return b"".join(parts)
