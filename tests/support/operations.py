"""Calling `MastOperations` handlers the way the kernel would, without the kernel.

`readdir` answers through `pyfuse3.readdir_reply`, which needs a kernel request buffer; the
`readdir_reply` below stands in for it (tests/ops/conftest.py patches it in): it keeps the
entries a `ReaddirToken` is given until its capacity is reached, then refuses one, as a full
buffer does.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

import pyfuse3
import pytest
from pyfuse3 import FUSEError, InodeT

from mastfs.fs import MastOperations
from mastfs.tree import ROOT_INODE


def ctx() -> pyfuse3.RequestContext:
    """The request context: mastfs never looks at it."""
    return cast(pyfuse3.RequestContext, None)


async def fuse_errno(call: Awaitable[Any]) -> int:
    """The errno of the FUSEError `call` raises (it must raise one)."""
    with pytest.raises(FUSEError) as info:
        await call
    return info.value.errno


async def lookup_path(ops: MastOperations, path: str) -> pyfuse3.EntryAttributes:
    """Look up each component of `path` from the root, as the kernel resolves a path."""
    attr = await ops.getattr(InodeT(ROOT_INODE), ctx())
    for name in path.split("/") if path else ():
        attr = await ops.lookup(attr.st_ino, name.encode(), ctx())
    return attr


@dataclass
class ReaddirToken:
    """What one `readdir` call was given: (name, attributes, next offset) of each entry."""

    capacity: int | None = None
    entries: list[tuple[str, pyfuse3.EntryAttributes, int]] = field(default_factory=list)


def readdir_reply(token: Any, name: bytes, attr: pyfuse3.EntryAttributes, next_id: int) -> bool:
    """Stand-in for `pyfuse3.readdir_reply`: False (entry not taken) once the buffer is full."""
    assert isinstance(token, ReaddirToken)
    if token.capacity is not None and len(token.entries) >= token.capacity:
        return False
    token.entries.append((name.decode(), attr, next_id))
    return True


async def readdir(
    ops: MastOperations, inode: int, start_id: int = 0, capacity: int | None = None
) -> list[tuple[str, pyfuse3.EntryAttributes, int]]:
    """One `readdir` call on an opened directory (needs `readdir_reply` patched in)."""
    fh = await ops.opendir(InodeT(inode), ctx())
    try:
        token = ReaddirToken(capacity)
        await ops.readdir(fh, start_id, cast(pyfuse3.ReaddirToken, token))
        return token.entries
    finally:
        await ops.releasedir(fh)


async def listdir(ops: MastOperations, inode: int) -> list[str]:
    """Every name in a directory, read in pages of 7 entries as a small kernel buffer would."""
    names: list[str] = []
    offset = 0
    while page := await readdir(ops, inode, offset, capacity=7):
        names += [name for name, _, _ in page]
        offset = page[-1][2]
    return names


async def read_all(ops: MastOperations, inode: int, step: int = 1 << 20) -> bytes:
    """open, read in `step` pieces to the end, release."""
    info = await ops.open(InodeT(inode), 0, ctx())
    try:
        size = (await ops.getattr(InodeT(inode), ctx())).st_size
        parts = [await ops.read(info.fh, off, step) for off in range(0, size, step)]
        return b"".join(parts)
    finally:
        await ops.release(info.fh)
