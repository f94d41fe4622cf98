"""The operations as other users of a shared mount call them (the kernel's request context).

With `default_permissions` the kernel checks the modes first; these tests show the handlers
hold on their own too: another uid cannot change the selection nor open the owner's files, a
catastrophic regex is refused with EINVAL, and no selection work runs on the trio thread.
"""

from __future__ import annotations

import errno
import stat
import threading
from types import SimpleNamespace
from typing import Any, cast

import pyfuse3
import pytest
from pyfuse3 import InodeT

from mastfs import fs as fs_mod
from mastfs import selection as sel_mod
from mastfs.fs import MastOperations
from mastfs.ownership import Ownership
from mastfs.selection import Selection
from mastfs.tree import MANIFEST, ROOT_INODE
from mastfs.xattrs import XATTR_SELECTION, XATTR_SUMMARY
from tests.ops.conftest import MakeOps
from tests.support.operations import fuse_errno, lookup_path
from tests.support.sim import AUTHORIZED_TOKEN, UNAUTHORIZED_TOKEN

MOUNTER, GROUP, OTHER = 1000, 1000, 65534
CATASTROPHIC = r"/^(\w|\w)*$/"
ROOT = InodeT(ROOT_INODE)


def as_user(uid: int, gid: int | None = None) -> pyfuse3.RequestContext:
    """A request context as the kernel gives it: the caller's uid and gid."""
    return cast(pyfuse3.RequestContext, SimpleNamespace(uid=uid, gid=gid or uid, pid=1, umask=0))


def share(ops: MastOperations, **options: Any) -> MastOperations:
    ops.ownership = Ownership.build(MOUNTER, GROUP, private_views=True, **options)
    return ops


async def product_attr(ops: MastOperations, exclusive: bool) -> pyfuse3.EntryAttributes:
    snap = ops.state.snapshot
    product = next(p for p in snap.selected if p.is_exclusive == exclusive)
    return await lookup_path(ops, snap.tree.paths(product.dataURI)[0])


async def test_modes_follow_ownership(make_ops: MakeOps) -> None:
    async with make_ops("6543", token=AUTHORIZED_TOKEN, readable={"6543"}) as ops:
        share(ops, umask=0o027)
        root = await ops.getattr(ROOT)
        assert (stat.S_IMODE(root.st_mode), root.st_uid, root.st_gid) == (0o750, MOUNTER, GROUP)
        public = await product_attr(ops, exclusive=False)
        assert stat.S_IMODE(public.st_mode) == 0o440
        exclusive = await product_attr(ops, exclusive=True)
        assert stat.S_IMODE(exclusive.st_mode) == 0o400
        manifest = await ops.lookup(ROOT, MANIFEST.encode(), as_user(MOUNTER))
        assert stat.S_IMODE(manifest.st_mode) == 0o400


async def test_other_users_cannot_change_the_selection(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        share(ops)
        before = ops.state.snapshot
        value = Selection.build(regex="cal").to_json().encode()
        assert await fuse_errno(ops.setxattr(ROOT, XATTR_SELECTION, value, as_user(OTHER))) == (
            errno.EPERM
        )
        assert ops.state.snapshot is before
        # The owner may, and so may root.
        await ops.setxattr(ROOT, XATTR_SELECTION, value, as_user(MOUNTER))
        assert ops.state.snapshot is not before
        await ops.setxattr(ROOT, XATTR_SELECTION, Selection().to_json().encode(), as_user(0))
        assert ops.state.snapshot.selection == Selection()


async def test_other_users_cannot_open_private_files(make_ops: MakeOps) -> None:
    async with make_ops("6543", token=AUTHORIZED_TOKEN, readable={"6543"}) as ops:
        share(ops)
        exclusive = await product_attr(ops, exclusive=True)
        public = await product_attr(ops, exclusive=False)
        manifest = await ops.lookup(ROOT, MANIFEST.encode(), as_user(MOUNTER))
        for attr in (exclusive, manifest):
            assert await fuse_errno(ops.open(attr.st_ino, 0, as_user(OTHER))) == errno.EACCES
            info = await ops.open(attr.st_ino, 0, as_user(MOUNTER))
            await ops.release(info.fh)
        info = await ops.open(public.st_ino, 0, as_user(OTHER))
        await ops.release(info.fh)
        # With a group opted in, the kernel checks membership; the handler lets it through.
        share(ops, exclusive_gid=4242)
        info = await ops.open(exclusive.st_ino, 0, as_user(OTHER, 4242))
        await ops.release(info.fh)


async def test_summary_names_the_login_to_the_owner_only(make_ops: MakeOps) -> None:
    async with make_ops("6543", token=UNAUTHORIZED_TOKEN) as ops:
        share(ops)
        assert ops.state.user is not None
        name = ops.state.user.display_name
        owner = await ops.getxattr(ROOT, XATTR_SUMMARY, as_user(MOUNTER))
        other = await ops.getxattr(ROOT, XATTR_SUMMARY, as_user(OTHER))
        assert name.encode() in owner
        assert name.encode() not in other and b"not readable" in other


async def test_catastrophic_regex_is_refused_with_einval(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        share(ops)
        before = ops.state.snapshot
        value = Selection.build(regex=CATASTROPHIC).to_json().encode()
        assert await fuse_errno(ops.setxattr(ROOT, XATTR_SELECTION, value, as_user(MOUNTER))) == (
            errno.EINVAL
        )
        assert ops.state.snapshot is before
        # Still answering, and still selectable.
        await ops.getattr(ROOT)
        value = Selection.build(regex="cal").to_json().encode()
        await ops.setxattr(ROOT, XATTR_SELECTION, value, as_user(MOUNTER))
        assert ops.state.snapshot is not before


_select = sel_mod.select


async def test_no_selection_work_on_the_trio_thread(
    make_ops: MakeOps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing (regexes compiled), selecting and comparing trees all run in worker threads."""
    trio_thread = threading.current_thread()
    seen: dict[str, list[threading.Thread]] = {"from_json": [], "select": [], "differences": []}
    from_json = Selection.from_json.__func__  # type: ignore[attr-defined]
    differences = fs_mod._differences

    def record(name: str) -> None:
        seen[name].append(threading.current_thread())

    def spy_from_json(cls: type[Selection], text: str) -> Selection:
        record("from_json")
        return cast(Selection, from_json(cls, text))

    def spy_select(products: Any, sel: Selection, budget: float = sel_mod.MATCH_BUDGET) -> Any:
        record("select")
        return _select(products, sel, budget)

    def spy_differences(old: Any, new: Any) -> Any:
        record("differences")
        return differences(old, new)

    async with make_ops() as ops:
        # (The fixture built the first snapshot itself; a mount builds it in a worker thread.)
        monkeypatch.setattr(Selection, "from_json", classmethod(spy_from_json))
        monkeypatch.setattr(sel_mod, "select", spy_select)
        monkeypatch.setattr(fs_mod, "_differences", spy_differences)
        share(ops)
        value = Selection.build(regex="/x1dints/i").to_json().encode()
        await ops.setxattr(ROOT, XATTR_SELECTION, value, as_user(MOUNTER))
    assert all(seen.values()), seen
    assert trio_thread not in {t for threads in seen.values() for t in threads}
