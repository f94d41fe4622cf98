"""The fsspec front end of the core: `mast://` URLs for processes that cannot mount.

Registered as fsspec's `mast` protocol through the `fsspec.specs` entry point, so nothing needs
importing first. Two kinds of filesystem, by their options:

* **By URI** (no query options): `fsspec.open("mast://JWST/product/<file>")` reads the product
  whose MAST URI is `mast:JWST/product/<file>`. Its size comes from the cache's record or one
  HEAD; nothing can be listed.
* **A query** (`program=2734`, any option of `mastfs mount`, `api.py`): the same tree as a
  mount of it (`JWST/<dataset>/<file>`, `manifest.html`, `selection.csv`), listed from the
  query session; `info` carries each product's `user.mast.*` metadata, as the xattrs do.

Either way the bytes come through the same `Core` a mount drives: the same block cache on disk
(shared with every mount and process of the user, `cache/store.py`), version rules (an open
file reads one version or fails), token (`token_file` or `$MAST_API_TOKEN`, `token.py`) and
server (`server` or `$MASTFS_SERVER`, `runtime.server_url`). The core runs on a trio loop in a
thread of its own (`loop.LoopThread`), one per process and set of options, started at first
use; every call into it is bounded by a timeout derived from the `timeout` option.

Pickling (Dask) carries only the options, never the token or the loop: a worker rebuilds the
filesystem and reads the token from its own environment or token file. After a fork the child
starts its own loop. Errors are Python's: `FileNotFoundError`, `PermissionError` (a product this
token may not read), `OSError(EROFS)` for writes, `OSError(EIO)` when the archive failed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from mastfs import api, runtime
from mastfs.cache import DEFAULT_PARALLEL, Block
from mastfs.core import Core, OpenFile, open_core
from mastfs.fetch import Fetcher, FetchError, NotAuthorized, NotFound, RetryPolicy
from mastfs.loop import LoopClosed, LoopThread
from mastfs.model import Product
from mastfs.private import PrivacyError
from mastfs.selection import SelectionError
from mastfs.session import Session, SessionError, open_session
from mastfs.state import MountState
from mastfs.tree import HEADERS, Entry
from mastfs.xattrs import product_xattrs

log = logging.getLogger(__name__)

PROTOCOL = "mast"
# fsspec's own options, which are not mastfs's.
_FSSPEC_OPTIONS = frozenset(
    {"use_listings_cache", "listings_expiry_time", "max_paths", "asynchronous", "loop"}
)
# The largest piece one call into the core reads: `cat` of a 4 GiB product must not ask the
# cache for all of it at once.
READ_PIECE = 64 << 20
# Ranges of one `cat_ranges` read at once.
PARALLEL_RANGES = 2 * DEFAULT_PARALLEL
# Seconds added to the archive timeout for each call into the core (queueing, disk).
CALL_GRACE = 30.0


class MastQueryError(OSError):
    """The query could not be answered; the message is one line for the user."""


# -- the loops, one per process and set of options ---------------------------------------------

_loops: dict[str, LoopThread[Core]] = {}
_loops_lock = threading.Lock()


def private_cache_dir(path: Path) -> None:
    """The cache directory, created private; `PermissionError` when others could write it."""
    try:
        runtime.check_cache_dir(path)
    except PrivacyError as exc:
        raise PermissionError(errno.EACCES, str(exc)) from None


class _LogProgress:
    """The session's progress and warnings, to this module's log (a notebook shows warnings)."""

    def progress(self, text: str) -> None:
        log.info("%s", text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)


async def query_session(settings: api.Settings, fetcher: Fetcher | None = None) -> Session:
    """The query session of `settings` (which must have a query), its progress and warnings
    logged; `MastQueryError` with one line when the query cannot be answered."""
    assert settings.query is not None
    try:
        session = await open_session(
            settings.query,
            settings.selection,
            server=settings.server,
            token=settings.token,
            cache_dir=settings.cache_dir,
            layout=settings.layout,
            reporter=_LogProgress(),
            fetcher=fetcher,
            limits=settings.limits,
            resolver=settings.resolver,
        )
    except (SessionError, SelectionError) as exc:
        raise MastQueryError(str(exc)) from None
    if session.unreadable_warning:
        log.warning("%s", session.unreadable_warning)
    return session


@asynccontextmanager
async def open_reader(settings: api.Settings) -> AsyncIterator[Core]:
    """The core a reader process drives: the query session (none for URIs) over a block cache
    in `settings.cache_dir`, the fetcher with the token and the server. `mount.serve` is the
    FUSE twin of this."""
    async with AsyncExitStack() as stack:
        timeout = settings.limits.timeout
        fetcher = Fetcher(
            settings.server, settings.token, RetryPolicy(deadline=timeout), timeout=timeout
        )
        stack.callback(fetcher.close)
        private_cache_dir(settings.cache_dir)
        if settings.query is None:
            state = MountState([], settings.selection, settings.layout, None)
        else:
            state = (await query_session(settings, fetcher)).state
        core = await stack.enter_async_context(
            open_core(
                state,
                fetcher,
                cache_dir=settings.cache_dir,
                cache_size=settings.cache_size,
                read_timeout=timeout,
                metadata_ttl=settings.metadata_ttl,
                limit_token=settings.query is not None,
                # No `headers/` here (astropy reads header blocks itself): no header cache.
                header_cache=False,
            )
        )
        yield core


def _loop_for(key: str, settings: api.Settings) -> LoopThread[Core]:
    with _loops_lock:
        loop = _loops.get(key)
        if loop is None or not loop.alive:
            limits = settings.limits
            loop = LoopThread(
                lambda: open_reader(settings),
                name="mastfs-fsspec",
                start_timeout=limits.query_time + 2 * limits.timeout + CALL_GRACE,
            )
            _loops[key] = loop
        return loop


def os_error(exc: BaseException, path: str = "") -> BaseException:
    """The Python exception a caller of fsspec expects for a failure of the core."""
    where = (path,) if path else ()
    if isinstance(exc, NotAuthorized):
        return PermissionError(errno.EACCES, str(exc), *where)
    if isinstance(exc, NotFound):
        return FileNotFoundError(errno.ENOENT, str(exc), *where)
    if isinstance(exc, FetchError):
        return OSError(errno.EIO, str(exc), *where)
    if isinstance(exc, LoopClosed):
        return OSError(errno.EIO, f"mast:// filesystem closed: {exc}", *where)
    return exc


# -- the filesystem ------------------------------------------------------------------------------


class MastFileSystem(AbstractFileSystem):
    """MAST products as an fsspec filesystem: by URI, or a query's tree (module docstring).

    `fsspec.filesystem("mast", program=2734, level="2b,3")` takes the options of
    `mastfs mount` by their Python names; a bad one is a `ValueError` naming it.
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(self, **options: Any) -> None:
        own = {k: options.pop(k) for k in list(options) if k in _FSSPEC_OPTIONS}
        super().__init__(**own)
        options = {k: v for k, v in options.items() if v is not None}
        self.settings = api.reader_settings(options)
        # One loop per set of options and token (hashed: the key is kept in a module dict).
        token = hashlib.sha256((self.settings.token or "").encode()).hexdigest()
        self._key = json.dumps([sorted(options.items()), token], default=str)
        # Each call waits at most this long: a read's own bound (`timeout`) and some.
        self.call_timeout = 2 * self.settings.limits.timeout + CALL_GRACE

    def __repr__(self) -> str:
        what = self.settings.query.describe() if self.settings.query else "by URI"
        return f"MastFileSystem({what}, server={self.settings.server!r})"

    def close(self) -> None:
        """End the loop of this filesystem's options in this process: the block cache's
        pending writes reach the disk. The next call starts a new one (at exit, this runs by
        itself)."""
        with _loops_lock:
            loop = _loops.pop(self._key, None)
        if loop is not None:
            loop.close()

    @property
    def by_uri(self) -> bool:
        return self.settings.query is None

    # -- the core, on its loop -------------------------------------------------------------------

    @property
    def core(self) -> Core:
        """The core this filesystem reads through (its query session is made at first use).
        On the loop's own thread the loop is running already: no lock is taken there."""
        loop = _loops.get(self._key)
        if loop is None or not loop.alive:
            loop = _loop_for(self._key, self.settings)
        return loop.value

    def _call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        loop = _loop_for(self._key, self.settings)
        try:
            return loop.call(fn, *args, timeout=timeout or self.call_timeout)
        except (FetchError, LoopClosed) as exc:
            raise os_error(exc) from None

    # -- paths -----------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        for prefix in (PROTOCOL + "://", PROTOCOL + "::", PROTOCOL + ":"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{self._strip_protocol(name)}"

    def _uri(self, path: str) -> str:
        """The MAST URI of a by-URI path: `JWST/product/f.fits` -> `mast:JWST/product/f.fits`."""
        parts = path.split("/")
        if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
            raise FileNotFoundError(
                errno.ENOENT,
                "not a MAST product URI (expected mast://MISSION/.../FILE; without a query, "
                "nothing can be listed: pass program=... to browse)",
                path,
            )
        return f"mast:{path}"

    def _entry(self, path: str) -> Entry:
        # `headers/` is the mount's way to grep headers without astropy; here astropy on the
        # product reads only its header blocks anyway, so the mirror is not shown.
        hidden = path.partition("/")[0] == HEADERS
        entry = None if hidden else self.core.snapshot.tree.lookup_path(path)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "no such file in the selection", path)
        return entry

    # -- metadata --------------------------------------------------------------------------------

    def _info(self, path: str, entry: Entry) -> dict[str, Any]:
        core = self.core
        snap = core.snapshot
        if entry.is_dir:
            return {
                "name": path,
                "size": 0,
                "type": "directory",
                "mtime": snap.mtime,
                "nlink": snap.tree.nlink(entry.inode),
            }
        if entry.virtual is not None:
            content = core.virtual_content(entry.virtual, snap)
            return {"name": path, "size": len(content), "type": "file", "mtime": snap.mtime}
        product = entry.product
        assert product is not None
        return {
            "name": path,
            "size": product.size,
            "type": "file",
            "mtime": product.mtime,
            "nlink": max(1, snap.tree.nlink(entry.inode)),
            **product_xattrs(product, core.can_read(product)),
        }

    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if self.by_uri:
            product = self._call(self.core.product_at, self._uri(path))
            uri = product.dataURI
            return {"name": path, "size": product.size, "type": "file", "user.mast.uri": uri}
        return self._info(path, self._entry(path))

    def ls(self, path: Any, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if self.by_uri:
            infos = [self.info(path)]
        else:
            entry = self._entry(path)
            if not entry.is_dir:
                infos = [self._info(path, entry)]
            else:
                tree = self.core.snapshot.tree
                infos = [
                    self._info(f"{path}/{child.name}" if path else child.name, child)
                    for child in tree.children(entry.inode)
                    if path or child.name != HEADERS
                ]
        return infos if detail else [info["name"] for info in infos]

    # -- bytes -----------------------------------------------------------------------------------

    async def _product(self, path: str) -> Product | bytes:
        """The product at `path`, or a virtual file's bytes."""
        if self.by_uri:
            return await self.core.product_at(self._uri(path))
        entry = self._entry(path)
        if entry.is_dir:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if entry.virtual is not None:
            snap = self.core.snapshot
            await self.core.render_views(snap)
            return self.core.virtual_content(entry.virtual, snap)
        assert entry.product is not None
        return entry.product

    async def _open_path(self, path: str) -> OpenFile | bytes:
        target = await self._product(path)
        if isinstance(target, bytes):
            return target
        return await self.core.open_product(target)

    async def _read(self, opened: OpenFile, start: int, end: int) -> list[Block]:
        """Bytes [start, end) of an open product, in pieces of at most `READ_PIECE`."""
        pieces: list[Block] = []
        offset = start
        while offset < end:
            data = await self.core.read_product(opened, offset, min(READ_PIECE, end - offset))
            if not len(data):
                break
            pieces.append(data)
            offset += len(data)
        return pieces

    async def _cat(self, path: str, start: int | None, end: int | None) -> list[Block]:
        opened = await self._open_path(path)
        size = len(opened) if isinstance(opened, bytes) else opened.product.size
        lo, hi = _bounds(size, start, end)
        if isinstance(opened, bytes):
            return [opened[lo:hi]]
        return await self._read(opened, lo, hi)

    def cat_file(
        self, path: Any, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        return b"".join(self._call(self._cat, path, start, end))

    def cat_ranges(
        self,
        paths: Sequence[str],
        starts: Sequence[int | None] | int | None,
        ends: Sequence[int | None] | int | None,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Every range at once (`PARALLEL_RANGES` in flight), in one call into the core."""
        count = len(paths)
        starts_list = list(starts) if isinstance(starts, Sequence) else [starts] * count
        ends_list = list(ends) if isinstance(ends, Sequence) else [ends] * count
        if not len(starts_list) == len(ends_list) == count:
            raise ValueError("paths, starts and ends must have the same length")
        stripped = [self._strip_protocol(p) for p in paths]
        results: list[Any] = [None] * count

        async def one(i: int, limiter: trio.CapacityLimiter) -> None:
            async with limiter:
                try:
                    with trio.fail_after(self.call_timeout):
                        results[i] = b"".join(
                            await self._cat(stripped[i], starts_list[i], ends_list[i])
                        )
                except trio.TooSlowError:
                    results[i] = TimeoutError(f"no answer within {self.call_timeout:g} s")
                except (FetchError, OSError) as exc:
                    results[i] = os_error(exc, stripped[i])

        async def all_ranges() -> None:
            limiter = trio.CapacityLimiter(PARALLEL_RANGES)
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(one, i, limiter)

        rounds = math.ceil(count / PARALLEL_RANGES) + 1
        self._call(all_ranges, timeout=rounds * self.call_timeout)
        if on_error == "raise":
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return results

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> MastFile:
        path = self._strip_protocol(path)
        if mode != "rb":
            raise OSError(errno.EROFS, "mast:// is read-only", path)
        opened = self._call(self._open_path, path)
        return MastFile(
            self,
            path,
            opened,
            block_size=block_size,
            cache_type=kwargs.get("cache_type", "none"),
            cache_options=cache_options,
        )

    # -- read-only -------------------------------------------------------------------------------

    def _read_only(self, path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "mast:// is read-only", str(path))

    mkdir = makedirs = rm_file = _rm = rmdir = touch = cp_file = _read_only  # type: ignore[assignment]


def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """fsspec's [start, end) of a file of `size` bytes: None is an end, negative counts back."""
    lo = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
    hi = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
    return lo, max(lo, hi)


class MastFile(AbstractBufferedFile):
    """An open product (one version: a change in the archive fails its reads, never mixes
    them) or a virtual file's bytes frozen at open.

    The default `cache_type` is "none": the core's block cache already keeps the bytes, in
    memory and on disk, with readahead; a second copy per open file would only cost memory.
    """

    def __init__(
        self,
        fs: MastFileSystem,
        path: str,
        opened: OpenFile | bytes,
        *,
        block_size: int | None,
        cache_type: str,
        cache_options: dict[str, Any] | None,
    ) -> None:
        self._opened = opened
        size = len(opened) if isinstance(opened, bytes) else opened.product.size
        super().__init__(
            fs,
            path,
            mode="rb",
            block_size=block_size,
            cache_type=cache_type,
            cache_options=cache_options,
            size=size,
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        opened = self._opened
        lo, hi = _bounds(self.size, start, end)
        if isinstance(opened, bytes):
            return opened[lo:hi]
        fs: MastFileSystem = self.fs
        return b"".join(fs._call(fs._read, opened, lo, hi))
