"""The FUSE front end of the core: look up in its snapshot, delegate bytes to it.

This is the only module that knows errno. Every handler turns failures into `FUSEError`: in
pyfuse3 any other exception escapes the main loop and kills the mount.
"""

from __future__ import annotations

import errno
import functools
import itertools
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import pyfuse3
import trio
from pyfuse3 import FileHandleT, FUSEError, InodeT

from mastfs import fetch
from mastfs.cache import Block
from mastfs.core import Core, OpenFile
from mastfs.headers import HeaderTexts
from mastfs.model import Product
from mastfs.ownership import Ownership
from mastfs.selection import Selection, SelectionError, format_summary
from mastfs.state import Snapshot
from mastfs.tree import ROOT_INODE, Entry
from mastfs.xattrs import (
    XATTR_CACHE,
    XATTR_CACHED,
    XATTR_SELECTION,
    XATTR_STATUS,
    XATTR_SUMMARY,
    product_xattrs,
)

log = logging.getLogger(__name__)

# Product metadata never changes under a name; directory listings change only on re-selection,
# which invalidates the kernel's entries explicitly.
ENTRY_TIMEOUT = 60.0
BLOCK_SIZE = 4096

P = ParamSpec("P")
R = TypeVar("R")


def errno_for(exc: BaseException) -> int:
    """The one place domain errors become errno values."""
    if isinstance(exc, FUSEError):
        return exc.errno
    if isinstance(exc, fetch.NotAuthorized):
        return errno.EACCES
    if isinstance(exc, fetch.NotFound):
        return errno.ENOENT
    if isinstance(exc, fetch.FetchError):
        return errno.EIO
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EDQUOT):
        return exc.errno
    return errno.EIO


def fuse_errors(
    handler: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn every exception of a handler into FUSEError, logging the unexpected ones."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except FUSEError:
            raise
        except (fetch.FetchError, OSError) as exc:
            raise FUSEError(errno_for(exc)) from None
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            raise FUSEError(errno.EIO) from None

    return wrapper


@dataclass
class _Handle:
    entry: Entry
    content: bytes | None  # virtual files: the bytes frozen at open
    opened: OpenFile | None = None  # products: the version this open reads


# What `_page_versions` holds for a file whose pages the kernel must drop at the next open.
_STALE = "stale"


class MastOperations(pyfuse3.Operations):
    """A read-only view of the core's snapshot; product bytes come from the core.

    State: `core`; open file handles (`_handles`); how many times the kernel has been given
    each inode (`_lookups`, so entries a re-selection removed stay answerable until the kernel
    forgets them: `_retired`); which version of each product the kernel's pages hold
    (`_page_versions`, so an open of another version drops them first); whether the kernel
    takes readahead (`_can_store`); who owns what and may change the selection (`ownership`:
    the kernel enforces its modes, with `default_permissions`; the handlers check the caller
    again where it matters).
    """

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        core: Core,
        spawn: Callable[[Callable[[], Awaitable[None]]], None] | None = None,
        ownership: Ownership | None = None,
        status: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        headers: HeaderTexts | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        # The daemon's status report (`status.gather`), for `user.mastfs.status`.
        self._status = status
        # The texts of `headers/` (no texts without one: those files then fail with EIO).
        self.headers = headers
        self.state = core.state
        self._spawn = spawn
        self._handles: dict[int, _Handle] = {}
        self._next_fh = itertools.count(1)
        self.ownership = ownership or Ownership.build(os.getuid(), os.getgid())
        self._lookups: dict[int, int] = {}
        self._page_versions: dict[int, str] = {}
        # Entries of earlier snapshots stay answerable while the kernel may still hold them.
        self._retired: dict[int, Entry] = {}
        self._can_store = True

    # -- attributes -------------------------------------------------------------------------

    def _entry(self, inode: int) -> Entry:
        entry = self.state.snapshot.tree.entry(inode) or self._retired.get(inode)
        if entry is None:
            raise FUSEError(errno.ENOENT)
        return entry

    def _attr(self, entry: Entry, snap: Snapshot | None = None) -> pyfuse3.EntryAttributes:
        snap = snap or self.state.snapshot
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = cast(InodeT, entry.inode)
        attr.entry_timeout = ENTRY_TIMEOUT
        attr.attr_timeout = ENTRY_TIMEOUT
        own = self.ownership
        attr.st_uid = own.uid
        attr.st_gid = own.gid
        attr.st_blksize = 1 << 17
        mtime = 0.0
        if entry.is_dir:
            mode = own.directory(entry.inode == ROOT_INODE)
            attr.st_mode = cast(pyfuse3.ModeT, stat.S_IFDIR | mode)
            attr.st_size = 0
            # A directory retired by a re-selection is unknown to the tree (nlink 0).
            attr.st_nlink = snap.tree.nlink(entry.inode) or 2
            mtime = snap.mtime
        elif entry.virtual is not None:
            mode, attr.st_gid = own.view()
            attr.st_mode = cast(pyfuse3.ModeT, stat.S_IFREG | mode)
            attr.st_size = len(self.state.virtual_content(entry.virtual, snap))
            attr.st_nlink = 1
            attr.entry_timeout = attr.attr_timeout = 0
            mtime = snap.mtime
        else:
            product = cast(Product, entry.product)
            mode, attr.st_gid = own.product(product.is_exclusive)
            attr.st_mode = cast(pyfuse3.ModeT, stat.S_IFREG | mode)
            # A header text's size is unknown until it is read: 0, read with direct_io like
            # /proc's files (`open`), so that `ls -l` fetches nothing.
            attr.st_size = 0 if entry.header else product.size
            attr.st_nlink = max(1, snap.tree.nlink(entry.inode))
            mtime = product.mtime
        attr.st_blocks = (attr.st_size + 511) // 512
        ns = int(mtime * 1e9)
        attr.st_mtime_ns = attr.st_ctime_ns = attr.st_atime_ns = ns
        return attr

    async def _render_views(self, snap: Snapshot) -> None:
        # A virtual file's size is its content's: `_attr` finds it rendered.
        await self.core.render_views(snap)

    def _looked_up(self, inode: int) -> None:
        self._lookups[inode] = self._lookups.get(inode, 0) + 1

    @fuse_errors
    async def lookup(
        self, parent_inode: InodeT, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        snap = self.state.snapshot
        entry = snap.tree.lookup(parent_inode, os.fsdecode(name))
        if entry is None:
            raise FUSEError(errno.ENOENT)
        if entry.virtual is not None:
            await self._render_views(snap)
        attr = self._attr(entry, snap)
        self._looked_up(entry.inode)
        return attr

    @fuse_errors
    async def getattr(
        self, inode: InodeT, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        entry = self._entry(inode)
        snap = self.state.snapshot
        if entry.virtual is not None:
            await self._render_views(snap)
        return self._attr(entry, snap)

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        # Inodes are derived from archive identities: only the counts need keeping, and
        # retired entries can go once the kernel holds them no more.
        for inode, nlookup in inode_list:
            left = self._lookups.get(inode, 0) - nlookup
            if left > 0:
                self._lookups[inode] = left
            else:
                self._lookups.pop(inode, None)
                self._retired.pop(inode, None)

    # -- directories ---------------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> FileHandleT:
        entry = self._entry(inode)
        if not entry.is_dir:
            raise FUSEError(errno.ENOTDIR)
        return cast(FileHandleT, inode)

    @fuse_errors
    async def readdir(self, fh: FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        snap = self.state.snapshot
        children = snap.tree.children(fh)
        if fh == ROOT_INODE:
            await self._render_views(snap)
        if start_id == 0 and self.headers is not None:
            self.headers.listed(fh, snap.tree.headers_beneath(fh))
        for index in range(start_id, len(children)):
            child = children[index]
            attr = self._attr(child, snap)
            if not pyfuse3.readdir_reply(token, os.fsencode(child.name), attr, index + 1):
                break
            self._looked_up(child.inode)

    async def releasedir(self, fh: FileHandleT) -> None:
        return None

    # -- files ---------------------------------------------------------------------------------

    @fuse_errors
    async def open(
        self, inode: InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise FUSEError(errno.EROFS)
        entry = self._entry(inode)
        if entry.is_dir:
            raise FUSEError(errno.EISDIR)
        private = (
            self.ownership.private_views
            if entry.virtual is not None
            else cast(Product, entry.product).is_exclusive
        )
        # The kernel has checked the modes already; this holds even if they were wrong.
        if private and not self.ownership.may_open_private(_caller(ctx, self.ownership)):
            raise FUSEError(errno.EACCES)
        fh = next(self._next_fh)
        if entry.virtual is not None:
            snap = self.state.snapshot
            await self._render_views(snap)
            content = self.state.virtual_content(entry.virtual, snap)
            self._handles[fh] = _Handle(entry, content)
            # Virtual files change on re-selection: no page cache, sizes from the frozen bytes.
            return pyfuse3.FileInfo(fh=cast(FileHandleT, fh), direct_io=True, keep_cache=False)
        if entry.header:
            if self.headers is None:
                raise FUSEError(errno.EIO)
            self.headers.reading(cast(Product, entry.product))
            text = await self.headers.text(cast(Product, entry.product))
            self._handles[fh] = _Handle(entry, text)
            # One version's text, frozen at open; its size is not the attributes' 0.
            return pyfuse3.FileInfo(fh=cast(FileHandleT, fh), direct_io=True, keep_cache=False)
        opened = await self.core.open_product(cast(Product, entry.product))
        self._handles[fh] = _Handle(entry, None, opened)
        # A version's bytes never change: keep the kernel page cache across opens (astropy's
        # mmap and repeated reads rely on it; direct_io would break MAP_SHARED), unless the
        # pages are of another version, which the kernel then drops before this open reads.
        held = self._page_versions.get(inode)
        keep = held != _STALE and (
            opened.version is None or held is None or held == opened.version.identity
        )
        if opened.version is not None:
            self._page_versions[inode] = opened.version.identity
        return pyfuse3.FileInfo(fh=cast(FileHandleT, fh), direct_io=False, keep_cache=keep)

    @fuse_errors
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        handle = self._handles.get(fh)
        if handle is None:
            raise FUSEError(errno.EBADF)
        if handle.content is not None:
            return handle.content[off : off + size]
        opened = cast(OpenFile, handle.opened)
        # A view of a cached block, not a copy (the stub says bytes; pyfuse3 takes any
        # contiguous buffer and copies it into the kernel before the next request).
        data = await self.core.read_product(opened, off, size)
        if opened.version is not None:
            self._page_versions.setdefault(handle.entry.inode, opened.version.identity)
        return cast(bytes, data)

    async def release(self, fh: FileHandleT) -> None:
        self._handles.pop(fh, None)

    async def flush(self, fh: FileHandleT) -> None:
        return None

    # -- extended attributes ------------------------------------------------------------------

    def _cache_stats(self) -> dict[str, int]:
        """The caches' counters, and the header texts' (`header_texts.`) under `headers/`."""
        stats = self.core.stats()
        if self.headers is not None:
            stats.update({f"header_texts.{k}": v for k, v in self.headers.stats().items()})
        return stats

    def _xattrs(self, entry: Entry, caller: int) -> dict[str, str]:
        if entry.inode == ROOT_INODE:
            snap = self.state.snapshot
            # Who is logged in is the owner's to know, as in the views.
            shown = self.ownership.may_open_private(caller) or not self.ownership.private_views
            return {
                XATTR_SELECTION.decode(): snap.selection.to_json(),
                XATTR_SUMMARY.decode(): format_summary(
                    snap.summary, self.state.user, show_user=shown
                ),
                XATTR_CACHE.decode(): json.dumps(self._cache_stats(), sort_keys=True),
            }
        if entry.product is None:
            return {}
        product = entry.product
        return product_xattrs(
            product, self.state.can_read(product), self.state.references_of(product.dataURI)
        )

    @fuse_errors
    async def listxattr(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        caller = _caller(ctx, self.ownership)
        names = [name.encode() for name in self._xattrs(self._entry(inode), caller)]
        if inode == ROOT_INODE and self._status and self.ownership.may_change_selection(caller):
            names.append(XATTR_STATUS)
        return names

    async def getxattr(self, inode: InodeT, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        # `ls -l` asks every entry for security.selinux and POSIX ACLs. "Not supported" (not
        # "no such attribute") is the truth for those namespaces, and coreutils remembers it
        # per device: one request per `ls` instead of two or three per entry.
        if not name.startswith(b"user."):
            raise FUSEError(errno.EOPNOTSUPP)
        return await self._getxattr(inode, name, _caller(ctx, self.ownership))

    @fuse_errors
    async def _getxattr(self, inode: InodeT, name: bytes, caller: int) -> bytes:
        entry = self._entry(inode)
        if name == XATTR_STATUS and inode == ROOT_INODE and self._status is not None:
            # The query and the failed files may be private: the owner's and root's alone.
            if not self.ownership.may_change_selection(caller):
                raise FUSEError(errno.EACCES)
            return json.dumps(await self._status(), sort_keys=True).encode()
        if name == XATTR_CACHED and entry.product is not None:
            private = entry.product.is_exclusive
            if private and not self.ownership.may_open_private(caller):
                raise FUSEError(errno.EACCES)
            return str(await self.core.cached_bytes(entry.product)).encode()
        value = self._xattrs(entry, caller).get(os.fsdecode(name))
        if value is None:
            raise FUSEError(pyfuse3.ENOATTR)
        return value.encode()

    @fuse_errors
    async def setxattr(
        self, inode: InodeT, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        if inode != ROOT_INODE or name != XATTR_SELECTION:
            raise FUSEError(errno.EROFS)
        caller = _caller(ctx, self.ownership)
        if not self.ownership.may_change_selection(caller):
            log.warning("refused a selection change by uid %d (not the mount's owner)", caller)
            raise FUSEError(errno.EPERM)
        try:
            # Compiling the regexes is selection work too: not on the trio thread.
            selection = await trio.to_thread.run_sync(Selection.from_json, value.decode())
            await self.reselect(selection)
        except (SelectionError, ValueError, UnicodeDecodeError) as exc:
            log.warning("refused a selection: %s", exc)
            raise FUSEError(errno.EINVAL) from None

    async def reselect(self, selection: Selection) -> Snapshot:
        old, new = await self.core.reselect(selection)
        # Comparing the trees walks every entry: in a worker thread, like building them.
        gone, stale = await trio.to_thread.run_sync(_differences, old, new)
        for inode in gone:
            if self._lookups.get(inode):
                entry = old.tree.entry(inode)
                if entry is not None:
                    self._retired[inode] = entry
        log.info(
            "selection changed: %s (%d directory entries invalidated)",
            format_summary(new.summary),
            len(stale),
        )
        if self._spawn is not None:
            self._spawn(functools.partial(_invalidate, stale))
        return new

    def content_changed(self, dataURI: str) -> None:
        """The archive changed a product's bytes: drop the kernel's cached pages of it."""
        inode = self.state.snapshot.tree.inode_of(dataURI)
        if inode is None:
            return
        # Whatever the invalidation below achieves, the next open drops the pages itself.
        self._page_versions[inode] = _STALE
        if self._spawn is not None:
            log.info("%s changed in the archive: dropping cached pages", dataURI)
            self._spawn(functools.partial(_invalidate_inode, inode))

    def store_prefetched(self, dataURI: str, offset: int, data: Block) -> None:
        """Put readahead bytes into the kernel's page cache of the product's file (a worker
        thread calls this; `notify_store` is thread-safe and copies without the GIL)."""
        if not self._can_store:
            return
        inode = self.state.snapshot.tree.inode_of(dataURI)
        if inode is None:
            return
        try:
            # The stub says bytes; pyfuse3 takes any contiguous buffer (PyObject_GetBuffer), so
            # a view of the range response goes to the kernel without a copy of its own.
            pyfuse3.notify_store(cast(InodeT, inode), offset, data)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                self._can_store = False
                log.debug("the kernel cannot take readahead (notify_store): %s", exc)
            else:
                # ENOENT: the kernel has forgotten the inode; the bytes stay in our cache.
                log.debug("notify_store %s at %d: %s", dataURI, offset, exc)

    @fuse_errors
    async def removexattr(self, inode: InodeT, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise FUSEError(errno.EROFS)

    # -- read-only: everything that would change the tree --------------------------------------

    @fuse_errors
    async def setattr(
        self,
        inode: InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        raise FUSEError(errno.EROFS)

    async def _erofs(self, *args: Any, **kwargs: Any) -> Any:
        raise FUSEError(errno.EROFS)

    mknod = mkdir = unlink = rmdir = symlink = rename = link = create = write = _erofs  # type: ignore[assignment]

    @fuse_errors
    async def access(self, inode: InodeT, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        self._entry(inode)
        if mode & os.W_OK:
            raise FUSEError(errno.EROFS)
        return True

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        snap = self.state.snapshot
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = BLOCK_SIZE
        data.f_blocks = (snap.summary.selected_bytes + BLOCK_SIZE - 1) // BLOCK_SIZE
        data.f_bfree = data.f_bavail = 0
        data.f_files = snap.tree.file_count() + 2
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data


def _caller(ctx: pyfuse3.RequestContext | None, ownership: Ownership) -> int:
    """The uid of the process a request comes from; without a kernel (in-process callers and
    tests pass no context), the mounting user."""
    return ownership.mounter if ctx is None else int(ctx.uid)


def _differences(old: Snapshot, new: Snapshot) -> tuple[list[int], list[tuple[int, str]]]:
    """Inodes of `old` that `new` lacks, and `_changed_entries`."""
    gone = [inode for inode in old.tree.inodes() if new.tree.entry(inode) is None]
    return gone, _changed_entries(old, new)


def _changed_entries(old: Snapshot, new: Snapshot) -> list[tuple[int, str]]:
    """(parent inode, name) of every entry that vanished or now points elsewhere."""
    changed: list[tuple[int, str]] = []
    for inode in old.tree.inodes():
        entry = old.tree.entry(inode)
        if entry is None or not entry.is_dir:
            continue
        new_children = {c.name: c.inode for c in new.tree.children(inode)}
        for child in old.tree.children(inode):
            if new_children.get(child.name) != child.inode or child.virtual is not None:
                changed.append((inode, child.name))
    return changed


async def _invalidate_inode(inode: int) -> None:
    # From a worker thread: the kernel may need locks that a request in flight holds.
    def run() -> None:
        try:
            pyfuse3.invalidate_inode(cast(InodeT, inode), attr_only=False)
        except OSError as exc:
            log.debug("invalidate inode %d: %s", inode, exc)

    await trio.to_thread.run_sync(run)


async def _invalidate(entries: list[tuple[int, str]]) -> None:
    def run() -> None:
        for parent, name in entries:
            try:
                pyfuse3.invalidate_entry_async(
                    cast(InodeT, parent), os.fsencode(name), ignore_enoent=True
                )
            except OSError as exc:
                log.debug("invalidate %s/%s: %s", parent, name, exc)

    await trio.to_thread.run_sync(run)
