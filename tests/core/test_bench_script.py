"""scripts/bench and scripts/noop_fuse.py: the parts that can be checked without mounting.

The benchmark itself takes minutes and mounts filesystems; these tests cover what its table
depends on: the paths it reads exist in the simulator's directory view with the sizes it
expects, dd's output is parsed, the table survives missing sections and peers, the docs keep
the prose around the markers, and the no-op filesystem answers reads of the right size.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import httpx
import pytest

from mastfs.sim.catalog import BIG_4G_URI, ONE_GIB_URI, PARALLEL_URIS
from scripts.benchkit import common, goals, reads, sim
from scripts.benchkit import table as bench_table

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    # scripts/noop_fuse.py is a script, not part of a package: load it from its path.
    spec = importlib.util.spec_from_loader(name, SourceFileLoader(name, str(path)))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


noop = _load("mastfs_noop_fuse", ROOT / "scripts" / "noop_fuse.py")


@pytest.mark.parametrize("uri", [ONE_GIB_URI, BIG_4G_URI, *PARALLEL_URIS])
def test_benchmark_paths_exist_in_the_directory_view(sim_server: Any, uri: str) -> None:
    base = cast(str, sim_server.url)
    rel = sim.rel_path(uri)
    files = httpx.head(f"{base}/files/{rel}")
    download = httpx.head(f"{base}/api/v0.1/Download/file", params={"uri": uri})
    assert files.status_code == 200, rel
    assert files.headers["content-length"] == download.headers["content-length"]
    assert int(files.headers["content-length"]) >= common.PARALLEL_MIB * common.MiB


def test_parse_dd_reads_real_dd_output(tmp_path: Path) -> None:
    data = tmp_path / "f.bin"
    data.write_bytes(b"x" * (3 * common.MiB))
    done = subprocess.run(
        ["dd", f"if={data}", "of=/dev/null", "bs=1M"], capture_output=True, text=True
    )
    got = reads.parse_dd(done.stderr)
    assert got.nbytes == 3 * common.MiB
    assert got.seconds > 0
    with pytest.raises(common.BenchError):
        reads.parse_dd("dd: failed to open 'x': No such file or directory\n")


def test_table_survives_failed_sections_and_missing_peers() -> None:
    seq = {
        "curl_gbps": 2.0,
        "local_pagecache_gbps": 10.0,
        "noop_ra1024": {"cold_gbps": 2.0, "warm_gbps": 6.0},
        "noop_ra0": {"cold_gbps": 1.0, "warm_gbps": 5.0},
        "mastfs_ra1024": {"cold_gbps": 1.8, "warm_gbps": 5.0, "runs": []},
        "mastfs_ra0": {"cold_gbps": 0.5, "warm_gbps": 5.0, "runs": []},
        "rclone": {"error": "not installed"},
        "httpdirfs": {"cold_gbps": 0.05, "warm_gbps": 1.0},
    }
    results = {"seq": seq, "random": {"error": "BenchError: boom"}}
    rows = goals.build_rows(results)
    table = bench_table.render_table(rows)
    lines = table.splitlines()
    assert all(line.count(" | ") == 5 for line in lines[2:]), table
    first = next(r for r in rows if "readahead 1024 KiB" in r.measurement)
    assert first.met is True  # 1.8 / 2.0 = 0.9 >= 0.8
    slow = next(r for r in rows if "readahead 128 KiB (kernel default)" in r.measurement)
    assert slow.met is False
    assert any("rclone" in r.reference and "not installed" in r.reference for r in rows)
    assert any(r.mastfs == "error: BenchError: boom" for r in rows)
    assert any(r.mastfs == "not run" for r in rows if r.measurement.startswith("6."))


def test_doc_keeps_prose_around_the_markers(tmp_path: Path, monkeypatch: Any) -> None:
    doc = tmp_path / "performance.md"
    monkeypatch.setattr(bench_table, "DOC", doc)
    bench_table.write_doc("first table")
    assert bench_table.BEGIN in doc.read_text() and "first table" in doc.read_text()
    text = doc.read_text().replace(bench_table.BEGIN, "Intro by someone.\n\n" + bench_table.BEGIN)
    doc.write_text(text + "\n## Method\nwritten by hand\n")
    bench_table.write_doc("second table")
    final = doc.read_text()
    assert "second table" in final and "first table" not in final
    assert "Intro by someone." in final and "written by hand" in final
    assert final.count(bench_table.BEGIN) == 1 and final.count(bench_table.END) == 1


async def test_noop_filesystem_serves_sizes_and_stable_bytes() -> None:
    ops = noop.NoopOperations({"a.bin": 3 * noop.PERIOD + 10, "b.bin": 5})
    root = noop.ROOT_INODE
    a = await ops.lookup(root, b"a.bin")
    assert a.st_size == 3 * noop.PERIOD + 10
    fh = (await ops.open(a.st_ino, 0, None)).fh
    first = await ops.read(fh, 0, 1 << 20)
    again = await ops.read(fh, noop.PERIOD, 1 << 20)
    assert len(first) == 1 << 20 and first == again  # the pattern repeats every PERIOD bytes
    assert await ops.read(fh, noop.PERIOD, 4096) != await ops.read(fh, 1 << 20, 4096)
    assert len(await ops.read(fh, a.st_size - 7, 1 << 20)) == 7
    assert await ops.read(fh, a.st_size, 4096) == b""
    with pytest.raises(noop.pyfuse3.FUSEError):
        await ops.lookup(root, b"missing")
