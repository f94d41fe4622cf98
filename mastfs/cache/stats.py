"""The block cache's counters: what it served, from where, and what it cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Counters:
    """Counters since a cache opened (the trio thread updates them; `user.mastfs.cache`).

    `hits`: blocks foreground reads got without a request of their own (memory, disk, or
    another reader's request); `misses`: blocks fetched over HTTP, readahead included;
    `requests`: HTTP requests the cache made (range GETs, whole-file GETs, HEADs), not counting
    retries (`http_retries`); `bytes_fetched`: body bytes received; `stalls`: reads not served
    from the memory tier alone, which waited `stall_us` microseconds in all (readahead that
    keeps up leaves few); `handed_bytes`: readahead given to the kernel's page cache;
    `checksum_failures`: blocks read from disk that their checksums did not prove (dropped
    and fetched again).
    """

    reads: int = 0
    bytes_served: int = 0
    hits: int = 0
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    requests: int = 0
    bytes_fetched: int = 0
    readahead_requests: int = 0
    readahead_bytes: int = 0
    whole_streams: int = 0
    revalidations: int = 0
    invalidations: int = 0
    disk_errors: int = 0
    stalls: int = 0
    stall_us: int = 0
    disk_partial_reads: int = 0
    handed_bytes: int = 0
    checksum_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
