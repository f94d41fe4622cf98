"""What every part of the benchmark shares: paths, sizes, seeds, repetitions, its error type."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LAUNCHER = ROOT / "scripts" / "bench"
NOOP = ROOT / "scripts" / "noop_fuse.py"
DOC = ROOT / "docs" / "performance.md"
PY = sys.executable
# In the order they run.
SECTION_NAMES = (
    "seq", "header", "random", "parallel", "memory", "meta", "mount_time", "headers", "scaleout"
)

MiB = 1 << 20
GiB = 1 << 30
BUDGET_S = 570.0  # sections that would start after this are skipped (the run must stay < 10 min)
RANDOM_READS = 1000
RANDOM_SIZE = 64 * 1024
RANDOM_SEED = 5
PARALLEL_MIB = 512
PARALLEL_READERS = 8
RUNS = 3  # repetitions of the sequential measurements; medians are reported
READAHEADS = (1024, 0)  # KiB; 0 leaves the kernel's default (128 KiB)
PROGRAM = "2734"  # the products the byte-path sections read
META_PROGRAM = "1999"  # 10k products


class BenchError(Exception):
    """A measurement that could not be taken; its cell says why."""
