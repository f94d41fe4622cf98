"""Nodes sharing a real nginx site cache tier (docs/scale-out.md's recipe) in front of the archive.

Three mounts with separate caches are the nodes of a cluster. They read the same products
through the tier and the archive sends each byte about once; the tier killed in the middle of
a read leaves the reads going on directly, every byte right; and a product the archive changes
while the tier holds its old slices never reaches a node as a mix of two versions.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from scripts.benchkit.tier import Tier, nginx_unavailable, running_tier
from tests.support import reads
from tests.support.mounting import Mount, mounted, run_cli

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(nginx_unavailable() is not None, reason=str(nginx_unavailable())),
]

# Small multi-block products, all public: the x1dints spectra of program 2734's exposures.
SELECT = ["--program", "2734", "--group", "X1DINTS", "--layout", "flat"]
NODES = 3


@pytest.fixture(scope="module")
def tier(sim_server: Any, sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    with running_tier(sim_url, tmp_path_factory.mktemp("tier"), tls=True) as t:
        yield t


def _mount_nodes(
    stack: ExitStack, root: Path, sim_url: str, data_cache: str, n: int = NODES
) -> list[Mount]:
    return [
        stack.enter_context(
            mounted(
                root / f"node{i}",
                [*SELECT, "--data-cache", data_cache, "--metadata-ttl", "0"],
                root / f"cache{i}",
                server=sim_url,
            )
        )
        for i in range(n)
    ]


def _products(sim: Any, count: int) -> list[Any]:
    """The first `count` of the selected x1dints spectra of 2 to 8 MiB (several blocks each)."""
    files = sorted(
        (
            f
            for f in sim.server.catalog.files()
            if str(f.proposal_id) == "2734"
            and f.filename.endswith("_x1dints.fits")
            and 2 << 20 <= f.size <= 8 << 20
        ),
        key=lambda f: f.uri,
    )
    assert len(files) >= count
    return files[:count]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_nodes_share_the_tier_and_the_archive_sends_each_byte_once(
    sim: Any, sim_url: str, tier: Tier, tmp_path: Path
) -> None:
    products = _products(sim, 2)
    with ExitStack() as stack:
        nodes = _mount_nodes(stack, tmp_path, sim_url, tier.url)
        sim.reset_stats()
        got: dict[tuple[int, str], str] = {}

        def read(i: int, node: Mount) -> None:
            for f in products:
                got[(i, f.uri)] = reads.sha256(node.path / f.filename)

        threads = [threading.Thread(target=read, args=(i, node)) for i, node in enumerate(nodes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for f in products:
        want = _digest(sim.expected(f.uri, 0, f.size))
        assert [got.get((i, f.uri)) for i in range(NODES)] == [want] * NODES
        sent = sim.file_stats(f.uri)
        # Each byte left the archive once (the tier fetches whole slices; a product's last
        # slice ends at its end), not once per node.
        assert sent["bytes"] == f.size, (f.filename, sent, tier.error_log()[-2000:])
        # What the nodes asked the archive themselves: a HEAD each, to check the tier's word.
        assert sent["methods"].get("HEAD", 0) <= NODES


def test_tier_killed_mid_read_reads_go_on_directly(sim: Any, sim_url: str, tmp_path: Path) -> None:
    f = _products(sim, 1)[0]
    with running_tier(sim_url, tmp_path / "tier") as doomed, ExitStack() as stack:
        (node,) = _mount_nodes(stack, tmp_path, sim_url, f"{doomed.url};DIRECT", n=1)
        # The archive trickles, so the read through the tier is under way when it dies.
        sim.faults(bandwidth=2 << 20)
        outcome: list[bytes | BaseException] = []

        def read() -> None:
            try:
                outcome.append(reads.read_bytes(node.path / f.filename))
            except BaseException as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        sim.wait_for_bytes(f.uri, 256 << 10)
        doomed.kill()
        reader.join()
        sim.clear_faults()
        assert len(outcome) == 1 and isinstance(outcome[0], bytes), outcome
        assert outcome[0] == sim.expected(f.uri, 0, f.size)
        # The same node keeps reading other products, directly.
        other = _products(sim, 2)[1]
        assert reads.sha256(node.path / other.filename) == _digest(
            sim.expected(other.uri, 0, other.size)
        )


def test_content_change_at_the_archive_never_mixes_versions(
    sim: Any, sim_url: str, tier: Tier, tmp_path: Path
) -> None:
    f = _products(sim, 2)[1]
    old = sim.expected(f.uri, 0, f.size)
    half = (f.size // 2) & ~((1 << 20) - 1)
    with ExitStack() as stack:
        first, second, third = _mount_nodes(stack, tmp_path, sim_url, tier.url)
        # The tier holds the first half of the old version.
        assert reads.pread(first.path / f.filename, 0, half) == old[:half]
        sim.change(f.uri)
        try:
            new = sim.expected(f.uri, 0, f.size)
            assert new != old
            # A node that never read it, one that read half of it (a new open: --metadata-ttl 0),
            # and the first again: each gets the archive's new version whole.
            for node in (second, first, third):
                data = reads.read_bytes(node.path / f.filename)
                assert data == new, (
                    node.path,
                    [i for i in range(0, f.size, 1 << 20) if data[i : i + 16] == old[i : i + 16]],
                )
        finally:
            sim.change(f.uri, generation=0)


def test_cloud_source_with_the_archive_for_what_the_bucket_lacks(
    sim: Any, sim_url: str, tmp_path: Path
) -> None:
    in_cloud = _products(sim, 1)[0]
    thumb = sim.file("mast:JWST/product/jw02734001001_02101_00001-seg004_nis_rate_thumb.png")
    args = ["--program", "2734", "--layout", "flat", "--source", "cloud"]
    with mounted(
        tmp_path / "node",
        [*args, "--cloud-url", f"{sim_url}/stpubdata"],
        tmp_path / "cache",
        server=sim_url,
    ) as node:
        for f in (in_cloud, thumb):
            assert reads.sha256(node.path / f.filename) == _digest(sim.expected(f.uri, 0, f.size))
    assert sim.file_stats(in_cloud.uri)["bytes"] == 0
    assert sim.file_stats(thumb.uri)["bytes"] == thumb.size
    key = "jwst/public/jw02734/jw02734001001/" + in_cloud.filename
    assert sim.file_stats(f"s3://stpubdata/{key}")["bytes"] == in_cloud.size


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["--data-cache", "http://a:8080;;DIRECT"], {}, "--data-cache: empty cache URL"),
        ([], {"MASTFS_DATA_CACHE": "DIRECT;http://a"}, "DIRECT must come last"),
        (["--source", "cloud", "--cloud-url", "s3://stpubdata"], {}, "'s3://stpubdata'"),
    ],
)
def test_a_bad_source_value_is_one_line_naming_it(
    sim_url: str, tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    (tmp_path / "mnt").mkdir()
    argv = ["mount", "--program", "2734", "--server", sim_url, *args, str(tmp_path / "mnt")]
    done = run_cli(argv, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and names in done.stderr, done.stderr
    assert done.stderr.startswith("mastfs: error:")
