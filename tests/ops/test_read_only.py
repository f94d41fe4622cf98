"""Every handler that would change the filesystem answers EROFS, and changes nothing."""

from __future__ import annotations

import errno
import os
from typing import Any

import pyfuse3
import pytest
from pyfuse3 import FileHandleT, InodeT

from mastfs.fs import XATTR_SELECTION, XATTR_SUMMARY, MastOperations
from mastfs.tree import MANIFEST_INODE, ROOT_INODE
from tests.support.operations import ctx, fuse_errno, lookup_path
from tests.support.sim import Sim

SEG1 = "jw02734001001_02101_00001-seg001_nis"
PRODUCT = f"JWST/{SEG1}/{SEG1}_rate.fits"
PRODUCT_URI = f"mast:JWST/product/{SEG1}_rate.fits"


async def product_inode(ops: MastOperations) -> InodeT:
    return (await lookup_path(ops, PRODUCT)).st_ino


# (handler, its arguments after the inode of a product, of its directory, of the root)
WRITE_HANDLERS: list[tuple[str, Any]] = [
    ("mkdir", lambda f, d, r: (r, b"new", 0o755, ctx())),
    ("mknod", lambda f, d, r: (d, b"node", 0o100644, 0, ctx())),
    ("create", lambda f, d, r: (d, b"new.fits", os.O_WRONLY | os.O_CREAT, 0o644, ctx())),
    ("symlink", lambda f, d, r: (d, b"link", b"target", ctx())),
    ("link", lambda f, d, r: (f, r, b"hard", ctx())),
    ("unlink", lambda f, d, r: (d, f"{SEG1}_rate.fits".encode(), ctx())),
    ("rmdir", lambda f, d, r: (r, b"JWST", ctx())),
    ("rename", lambda f, d, r: (d, f"{SEG1}_rate.fits".encode(), r, b"moved", 0, ctx())),
    ("write", lambda f, d, r: (FileHandleT(1), 0, b"data")),
]


@pytest.mark.parametrize(("name", "arguments"), WRITE_HANDLERS, ids=[h[0] for h in WRITE_HANDLERS])
async def test_handlers_that_would_write_are_erofs(
    ops: MastOperations, name: str, arguments: Any
) -> None:
    before = await ops.listxattr(InodeT(ROOT_INODE), ctx())
    file = await product_inode(ops)
    folder = (await lookup_path(ops, f"JWST/{SEG1}")).st_ino
    handler = getattr(ops, name)
    assert await fuse_errno(handler(*arguments(file, folder, InodeT(ROOT_INODE)))) == errno.EROFS
    # Nothing moved: the product is where it was, with its inode.
    assert await product_inode(ops) == file
    assert await ops.listxattr(InodeT(ROOT_INODE), ctx()) == before


async def test_setattr_is_erofs(ops: MastOperations) -> None:
    file = await product_inode(ops)
    size = (await ops.getattr(file, ctx())).st_size
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 0
    attr.st_mode = pyfuse3.ModeT(0o100644)
    fields = pyfuse3.SetattrFields()
    for inode in (file, InodeT(ROOT_INODE), InodeT(MANIFEST_INODE)):
        assert await fuse_errno(ops.setattr(inode, attr, fields, None, ctx())) == errno.EROFS
    assert (await ops.getattr(file, ctx())).st_size == size


@pytest.mark.parametrize(
    "flags",
    [
        os.O_WRONLY,
        os.O_RDWR,
        os.O_RDONLY | os.O_TRUNC,
        os.O_WRONLY | os.O_APPEND,
        os.O_RDONLY | os.O_CREAT,
    ],
    ids=["O_WRONLY", "O_RDWR", "O_TRUNC", "O_APPEND", "O_CREAT"],
)
async def test_opening_for_writing_is_erofs_and_fetches_nothing(
    ops: MastOperations, sim: Sim, flags: int
) -> None:
    file = await product_inode(ops)
    for inode in (file, InodeT(MANIFEST_INODE)):
        assert await fuse_errno(ops.open(inode, flags, ctx())) == errno.EROFS
    assert sim.file_stats(PRODUCT_URI)["requests"] == 0
    # Read-only opens still work.
    info = await ops.open(file, os.O_RDONLY, ctx())
    await ops.release(info.fh)


async def test_only_the_roots_selection_attribute_can_be_set(ops: MastOperations) -> None:
    root, file = InodeT(ROOT_INODE), await product_inode(ops)
    selection = await ops.getxattr(root, XATTR_SELECTION, ctx())
    attempts = [
        (root, XATTR_SUMMARY, b"0 of 0 files selected"),
        (root, b"user.mastfs.cache", b"{}"),
        (root, b"user.comment", b"mine"),
        (file, XATTR_SELECTION, b"{}"),
        (file, b"user.mast.access", b"PUBLIC"),
        (InodeT(MANIFEST_INODE), XATTR_SELECTION, b"{}"),
    ]
    for inode, name, value in attempts:
        assert await fuse_errno(ops.setxattr(inode, name, value, ctx())) == errno.EROFS, name
    for inode, name in ((root, XATTR_SELECTION), (file, b"user.mast.uri")):
        assert await fuse_errno(ops.removexattr(inode, name, ctx())) == errno.EROFS, name
    assert await ops.getxattr(root, XATTR_SELECTION, ctx()) == selection
    assert await ops.getxattr(file, b"user.mast.uri", ctx()) == PRODUCT_URI.encode()


async def test_access_for_writing_is_erofs(ops: MastOperations) -> None:
    file = await product_inode(ops)
    for inode in (file, InodeT(ROOT_INODE), InodeT(MANIFEST_INODE)):
        assert await fuse_errno(ops.access(inode, os.W_OK, ctx())) == errno.EROFS
        assert await fuse_errno(ops.access(inode, os.R_OK | os.W_OK, ctx())) == errno.EROFS
        assert await ops.access(inode, os.R_OK, ctx()) is True
    assert await fuse_errno(ops.access(InodeT(987654321), os.R_OK, ctx())) == errno.ENOENT


async def test_statfs_shows_a_full_filesystem(ops: MastOperations) -> None:
    """No free blocks or inodes: nothing can be created, and `df` shows the selection's size."""
    data = await ops.statfs(ctx())
    assert data.f_bfree == data.f_bavail == 0
    assert data.f_ffree == data.f_favail == 0
    selected = ops.state.snapshot.summary.selected_bytes
    assert data.f_blocks * data.f_frsize >= selected
