"""Failures as a FUSE client sees them: EACCES, EIO, ENOSPC, ENOENT, EBADF, ENOTDIR, EISDIR.

Each comes from a real cause where the simulator can produce one (an exclusive-access product,
a token the archive refuses, server errors that outlast the retries) and shows up where a user
looks for it: the errno of the call, and the product's status in manifest.html.
"""

from __future__ import annotations

import errno
import os

import pytest
from pyfuse3 import FileHandleT, InodeT

from mastfs.fs import MastOperations
from mastfs.model import Product
from mastfs.sim.catalog import AUTHORIZED_TOKEN, UNAUTHORIZED_TOKEN
from mastfs.tree import MANIFEST_INODE, ROOT_INODE
from tests.ops.conftest import MakeOps
from tests.support.operations import ctx, fuse_errno, lookup_path, read_all
from tests.support.sim import FAST_RETRY, MiB, Sim
from tests.support.views import parse_manifest

SEG1 = "jw02734001001_02101_00001-seg001_nis"


def exclusive_product(ops: MastOperations) -> tuple[Product, InodeT]:
    """The smallest exclusive-access product of the mount, and its inode."""
    snap = ops.state.snapshot
    product = min((p for p in snap.selected if p.is_exclusive), key=lambda p: (p.size, p.dataURI))
    inode = snap.tree.inode_of(product.dataURI)
    assert inode is not None
    return product, InodeT(inode)


async def manifest_status(ops: MastOperations, uri: str) -> set[str]:
    """The status column of `uri`'s rows in manifest.html, as read through the handlers."""
    page = parse_manifest(await read_all(ops, MANIFEST_INODE))
    return {row.status for row in page.rows if row.uri == uri}


async def test_exclusive_access_without_a_token_is_eacces(make_ops: MakeOps, sim: Sim) -> None:
    async with make_ops("6543") as ops:
        product, inode = exclusive_product(ops)
        # Listed, with its size and attributes, but not readable...
        assert (await ops.getattr(inode, ctx())).st_size == product.size
        assert await ops.getxattr(inode, b"user.mast.readable", ctx()) == b"no"
        assert await fuse_errno(ops.open(inode, os.O_RDONLY, ctx())) == errno.EACCES
        # ...and the mount knew without asking the archive.
        assert sim.file_stats(product.dataURI)["requests"] == 0
        assert any("not authorized" in s for s in await manifest_status(ops, product.dataURI))


async def test_a_token_the_archive_refuses_is_eacces(make_ops: MakeOps, sim: Sim) -> None:
    """The mount believes it may read 6543 (as a wrong probe would); the archive says no."""
    async with make_ops("6543", token=UNAUTHORIZED_TOKEN, readable={"6543"}) as ops:
        product, inode = exclusive_product(ops)
        assert await ops.getxattr(inode, b"user.mast.readable", ctx()) == b"yes"
        # Nothing is cached, so the open asks nothing; the first read meets the refusal.
        info = await ops.open(inode, os.O_RDONLY, ctx())
        try:
            assert await fuse_errno(ops.read(info.fh, 0, 4096)) == errno.EACCES
        finally:
            await ops.release(info.fh)
        assert sim.file_stats(product.dataURI)["status"] == {"4xx": 1}, "refusals are not retried"
        assert any("not authorized" in s for s in await manifest_status(ops, product.dataURI))


async def test_an_authorized_token_reads_exclusive_access(make_ops: MakeOps, sim: Sim) -> None:
    async with make_ops("6543", token=AUTHORIZED_TOKEN, readable={"6543"}) as ops:
        product, inode = exclusive_product(ops)
        info = await ops.open(inode, os.O_RDONLY, ctx())
        try:
            assert await ops.read(info.fh, 0, 64 * 1024) == sim.expected(
                product.dataURI, 0, 64 * 1024
            )
        finally:
            await ops.release(info.fh)


async def test_server_errors_that_outlast_the_retries_are_eio(make_ops: MakeOps, sim: Sim) -> None:
    async with make_ops(readahead_max=0) as ops:
        attr = await lookup_path(ops, f"JWST/{SEG1}/{SEG1}_rate.fits")
        uri = f"mast:JWST/product/{SEG1}_rate.fits"
        info = await ops.open(attr.st_ino, os.O_RDONLY, ctx())
        try:
            sim.faults(error_rate=1.0, error_status=503, error_downloads_only=True, scope=uri)
            assert await fuse_errno(ops.read(info.fh, MiB, 4096)) == errno.EIO
            assert sim.file_stats(uri)["status"] == {"5xx": FAST_RETRY.attempts}
            statuses = await manifest_status(ops, uri)
            assert any("503" in s for s in statuses), statuses
            # Once the archive answers again, so does the mount: a failure is not cached.
            sim.clear_faults()
            assert await ops.read(info.fh, MiB, 4096) == sim.expected(uri, MiB, 4096)
        finally:
            await ops.release(info.fh)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), errno.ENOMEM),
        (OSError(errno.EPERM, "Operation not permitted"), errno.EIO),
        (RuntimeError("a bug"), errno.EIO),
    ],
    ids=["ENOSPC", "EDQUOT", "ENOMEM", "other-OSError", "bug"],
)
async def test_cache_failures_keep_their_errno_when_it_means_something(
    ops: MastOperations, monkeypatch: pytest.MonkeyPatch, raised: BaseException, expected: int
) -> None:
    """A full cache disk is ENOSPC to the reader (not EIO); anything else unexpected is EIO.

    The block cache itself logs and skips a failed disk write (the bytes are served from the
    network anyway), so this is the mapping at the handler's edge, for what does reach it.
    """
    attr = await lookup_path(ops, f"JWST/{SEG1}/{SEG1}_rate.fits")
    info = await ops.open(attr.st_ino, os.O_RDONLY, ctx())

    async def failing_read(*args: object, **kwargs: object) -> bytes:
        raise raised

    monkeypatch.setattr(ops.core.cache, "read", failing_read)
    try:
        assert await fuse_errno(ops.read(info.fh, 0, 4096)) == expected
    finally:
        await ops.release(info.fh)


async def test_missing_names_inodes_and_handles(ops: MastOperations) -> None:
    root = InodeT(ROOT_INODE)
    assert await fuse_errno(ops.lookup(root, b"no-such-name", ctx())) == errno.ENOENT
    assert await fuse_errno(ops.getattr(InodeT(987654321), ctx())) == errno.ENOENT
    assert await fuse_errno(ops.open(InodeT(987654321), os.O_RDONLY, ctx())) == errno.ENOENT
    assert await fuse_errno(ops.read(FileHandleT(424242), 0, 10)) == errno.EBADF
    folder = await lookup_path(ops, "JWST")
    assert await fuse_errno(ops.open(folder.st_ino, os.O_RDONLY, ctx())) == errno.EISDIR
    file = await lookup_path(ops, f"JWST/{SEG1}/{SEG1}_rate.fits")
    assert await fuse_errno(ops.opendir(file.st_ino, ctx())) == errno.ENOTDIR
    assert await fuse_errno(ops.lookup(file.st_ino, b"x", ctx())) == errno.ENOENT
    # user.* names the entry does not have: "no such attribute"; other namespaces: unsupported.
    assert await fuse_errno(ops.getxattr(file.st_ino, b"user.nothing", ctx())) == 61  # ENOATTR
    assert await fuse_errno(ops.getxattr(root, b"security.selinux", ctx())) == errno.EOPNOTSUPP
