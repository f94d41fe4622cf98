"""A mount over an archive that lies about its bodies, then a remount over the same cache
directory against the honest archive: the lies were errors, and nothing of them is served.

The archive is the session's simulator, lying through its fault knobs (docs/simulator.md,
"Faults") during the first mount and honest for the second; the server URL, part of the cache's
keys, is the same for both.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.support import reads
from tests.support.catalog import catalog_rows, nested_path
from tests.support.mounting import cleanup_stale_mounts, mounted
from tests.support.sim import MiB, Sim

pytestmark = pytest.mark.mount


def small_products(count: int) -> list[dict]:
    """Public FITS products of program 2734 over one block, smallest first."""
    rows = {
        r["dataURI"]: r
        for r in catalog_rows("2734")
        if r["productFilename"].endswith(".fits")
        and "_gs-" not in r["productFilename"]
        and 2 * MiB < int(r["size"]) < 16 * MiB
    }
    chosen = sorted(rows.values(), key=lambda r: (int(r["size"]), r["dataURI"]))[:count]
    assert len(chosen) == count
    return chosen


def test_an_honest_remount_serves_none_of_the_lies(sim: Sim, tmp_path: Path) -> None:
    cleanup_stale_mounts()
    cache = tmp_path / "cache"
    coded, under, short, whole = small_products(4)
    args = ["--program", "2734", "--timeout", "3"]
    lies = [
        # gzip bodies, whole files: what issue 12 saw served and cached as the product.
        (coded, {"ignore_range": True, "content_encoding": "gzip"}),
        # gzip bodies under the identity Content-Length: once, whole blocks of gzip bytes were
        # kept under the true ETag and size, so an honest remount served them.
        (under, {"ignore_range": True, "content_encoding": "gzip", "encoded_length": False}),
        # Every range body ends early.
        (short, {"short_body": 4096}),
        # Whole-file bodies shorter than their Content-Length.
        (whole, {"ignore_range": True, "short_body": 4096}),
    ]
    with mounted(tmp_path / "lying", args, cache, server=sim.url) as m:
        for row, knobs in lies:
            sim.clear_faults()
            sim.faults(scope=row["dataURI"], **knobs)
            with pytest.raises(OSError) as caught:
                reads.read_bytes(nested_path(m.path, row))
            assert caught.value.errno == errno.EIO, (knobs, caught.value)
            assert sim.gets(row["dataURI"]) >= 1
    sim.clear_faults()
    sim.reset_stats()

    with mounted(tmp_path / "honest", args, cache, server=sim.url) as m:
        for row, _ in lies:
            uri, size = row["dataURI"], int(row["size"])
            assert reads.read_bytes(nested_path(m.path, row)) == sim.expected(uri, 0, size)
            if row is not whole:
                # Read from the honest archive, not from what the lying one left behind.
                assert sim.sent(uri) >= size
            # (A whole body cut short left whole blocks of true bytes, which may be kept.)
