"""Re-selection through the root's `user.mastfs.selection` attribute, and what it leaves behind.

A new selection changes listings and the views at once; an entry it removes stays answerable
by inode (the kernel may still hold it: an open file, a cached dentry) and comes back with the
same inode when it is selected again.
"""

from __future__ import annotations

import errno
import os

import pytest
from pyfuse3 import InodeT

from mastfs.fs import XATTR_SELECTION, XATTR_SUMMARY, MastOperations
from mastfs.selection import Selection
from mastfs.tree import ROOT_INODE, SELECTION_CSV
from tests.ops.conftest import Spawned
from tests.support.catalog import catalog_rows
from tests.support.operations import ctx, fuse_errno, listdir, lookup_path, read_all
from tests.support.sim import Sim
from tests.support.views import read_csv

SEG1 = "jw02734001001_02101_00001-seg001_nis"
# Neither an X1DINTS product nor recommended: a re-selection to X1DINTS retires it.
RATE = f"JWST/{SEG1}/{SEG1}_rate.fits"
RATE_URI = f"mast:JWST/product/{SEG1}_rate.fits"
X1DINTS = Selection.build(groups="X1DINTS")


def x1dints_datasets() -> set[str]:
    return {
        r["obs_id"] for r in catalog_rows("2734") if r["productSubGroupDescription"] == "X1DINTS"
    }


async def select(ops: MastOperations, selection: Selection) -> None:
    await ops.setxattr(InodeT(ROOT_INODE), XATTR_SELECTION, selection.to_json().encode(), ctx())


async def selection_csv(ops: MastOperations) -> bytes:
    attr = await ops.lookup(InodeT(ROOT_INODE), SELECTION_CSV.encode(), ctx())
    return await read_all(ops, attr.st_ino)


async def test_setting_the_selection_changes_listings_views_and_attributes(
    ops: MastOperations, spawned: Spawned
) -> None:
    jwst = (await lookup_path(ops, "JWST")).st_ino
    seg1 = (await lookup_path(ops, f"JWST/{SEG1}")).st_ino
    before = await listdir(ops, seg1)
    csv_before = await selection_csv(ops)
    summary_before = await ops.getxattr(InodeT(ROOT_INODE), XATTR_SUMMARY, ctx())

    await select(ops, X1DINTS)

    assert set(await listdir(ops, jwst)) == x1dints_datasets()
    after = await listdir(ops, seg1)
    assert after == [f"{SEG1}_x1dints.fits"] and set(after) < set(before)
    for dataset in x1dints_datasets():
        folder = (await lookup_path(ops, f"JWST/{dataset}")).st_ino
        names = await listdir(ops, folder)
        assert names and all(name.endswith("_x1dints.fits") for name in names), names
    value = await ops.getxattr(InodeT(ROOT_INODE), XATTR_SELECTION, ctx())
    assert Selection.from_json(value.decode()) == X1DINTS
    assert await ops.getxattr(InodeT(ROOT_INODE), XATTR_SUMMARY, ctx()) != summary_before
    csv_after = await selection_csv(ops)
    assert csv_after != csv_before
    _, rows = read_csv(csv_after)
    assert rows and all(row["Suffix"] == "_x1dints" for row in rows)
    # The kernel's stale entries are invalidated in the background, once per re-selection.
    assert len(spawned) == 1


@pytest.mark.parametrize(
    "value",
    [b"not json", b'{"levels": ["9x"]}', b'{"colour": "blue"}', b"\xff", b"[]"],
    ids=["not-json", "bad-level", "unknown-key", "not-utf8", "not-an-object"],
)
async def test_a_bad_selection_is_einval_and_changes_nothing(
    ops: MastOperations, spawned: Spawned, value: bytes
) -> None:
    snapshot = ops.state.snapshot
    code = await fuse_errno(ops.setxattr(InodeT(ROOT_INODE), XATTR_SELECTION, value, ctx()))
    assert code == errno.EINVAL
    assert ops.state.snapshot is snapshot
    assert spawned == []


async def test_a_retired_entry_stays_answerable_by_inode(ops: MastOperations, sim: Sim) -> None:
    attr = await lookup_path(ops, RATE)
    info = await ops.open(attr.st_ino, os.O_RDONLY, ctx())
    try:
        head = await ops.read(info.fh, 0, 4096)
        await select(ops, X1DINTS)
        # Gone by name...
        folder = (await lookup_path(ops, f"JWST/{SEG1}")).st_ino
        assert await fuse_errno(ops.lookup(folder, os.path.basename(RATE).encode(), ctx())) == (
            errno.ENOENT
        )
        # ...but the kernel may still ask about the inode, and read the open file.
        again = await ops.getattr(attr.st_ino, ctx())
        assert (again.st_ino, again.st_size, again.st_mode) == (
            attr.st_ino,
            attr.st_size,
            attr.st_mode,
        )
        assert await ops.read(info.fh, 0, 4096) == head == sim.expected(RATE_URI, 0, 4096)
        assert await ops.getxattr(attr.st_ino, b"user.mast.uri", ctx()) == RATE_URI.encode()
    finally:
        await ops.release(info.fh)
    # A retired directory answers too.
    await select(ops, Selection.build(groups="X1DINTS", regex="/seg002/"))
    assert (await ops.getattr(folder, ctx())).st_ino == folder


async def test_selected_again_an_entry_has_its_old_inode(ops: MastOperations) -> None:
    attr = await lookup_path(ops, RATE)
    await select(ops, X1DINTS)
    with pytest.raises(Exception):  # noqa: B017 (FUSEError; checked by errno elsewhere)
        await lookup_path(ops, RATE)
    await select(ops, Selection())
    assert (await lookup_path(ops, RATE)).st_ino == attr.st_ino


async def test_a_retired_entry_is_dropped_once_the_kernel_forgets_it(ops: MastOperations) -> None:
    # Two lookups, as two paths through the kernel's dentry cache would make.
    attr = await lookup_path(ops, RATE)
    folder = (await lookup_path(ops, f"JWST/{SEG1}")).st_ino
    await ops.lookup(folder, os.path.basename(RATE).encode(), ctx())
    await select(ops, X1DINTS)
    assert (await ops.getattr(attr.st_ino, ctx())).st_ino == attr.st_ino
    await ops.forget([(attr.st_ino, 2)])
    assert await fuse_errno(ops.getattr(attr.st_ino, ctx())) == errno.ENOENT
