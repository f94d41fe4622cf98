"""The block cache: product bytes in fixed blocks, on disk across mounts, in memory while hot.

A package of small modules, one concept each (docs/architecture.md has the map):

  blocks      block arithmetic and the default sizes
  blockcache  the read path (`BlockCache`): memory -> in flight -> disk -> network
  flights     single flight per key
  budget      the memory budget's accounts
  memory      the memory tier (LRU)
  store       the on-disk store: diskcache index, product records, failures (`runfiles` below)
  runfiles    run files: O_DIRECT writes and reads of block runs
  versions    product versions and revalidation
  readahead   the readahead policy, pure arithmetic
  prefetch    the prefetcher that runs it
  handover    readahead handed to the kernel's page cache
  whole       whole-file streams for servers that ignore Range
  tasks       the cache's background tasks
  stats       counters
  tuning      process-wide tuning for the cache's threads

Nothing here knows FUSE exists: the front end passes `on_prefetched` (hand readahead to the
kernel) and `on_change` (a product's contents changed) callbacks.
"""

from __future__ import annotations

from mastfs.cache.blockcache import BlockCache
from mastfs.cache.blocks import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_METADATA_TTL,
    DEFAULT_PARALLEL,
    DEFAULT_READAHEAD_MAX,
    DEFAULT_REQUEST_MAX,
    HEADER_BLOCK_SIZE,
    Block,
)
from mastfs.cache.tuning import tune_process
from mastfs.cache.versions import Version, identity_of

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_METADATA_TTL",
    "DEFAULT_PARALLEL",
    "DEFAULT_READAHEAD_MAX",
    "DEFAULT_REQUEST_MAX",
    "HEADER_BLOCK_SIZE",
    "Block",
    "BlockCache",
    "Version",
    "identity_of",
    "tune_process",
]
