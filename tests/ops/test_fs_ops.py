"""fs.py's handlers called directly, without the kernel (as s3ql tests its Operations)."""

from __future__ import annotations

import threading
from typing import Any, cast

import pyfuse3

from mastfs.core import Core
from mastfs.fs import MastOperations
from mastfs.selection import Selection
from mastfs.state import MountState, Snapshot
from mastfs.tree import MANIFEST, MANIFEST_INODE, ROOT_INODE
from tests.support.operations import ctx
from tests.support.sample_products import products


class RecordingState(MountState):
    """Records the thread each manifest rendering ran in."""

    def __init__(self, *args: Any) -> None:
        self.rendered_in: list[threading.Thread] = []
        super().__init__(*args)

    def manifest(self, snapshot: Snapshot | None = None) -> bytes:
        if not self.manifest_current(snapshot):
            self.rendered_in.append(threading.current_thread())
        return super().manifest(snapshot)


async def test_the_manifest_is_never_rendered_on_the_trio_thread() -> None:
    state = RecordingState(products(), Selection(), "nested", None)
    # No cache is needed for the virtual files.
    ops = MastOperations(Core(state, cache=cast(Any, None)))
    trio_thread = threading.current_thread()

    first, second = state.snapshot.selected[0], state.snapshot.selected[-1]
    state.record_error(first.dataURI, "HTTP 503")  # the manifest shows fetch errors
    attr = await ops.getattr(pyfuse3.InodeT(MANIFEST_INODE), ctx())
    assert attr.st_size == len(state.manifest())

    state.reselect(Selection.build(extensions="fits"))
    attr = await ops.lookup(pyfuse3.InodeT(ROOT_INODE), MANIFEST.encode(), ctx())
    assert attr.st_size == len(state.manifest())

    state.record_error(second.dataURI, "HTTP 404 from the archive")
    info = await ops.open(pyfuse3.InodeT(MANIFEST_INODE), 0, ctx())
    content = await ops.read(info.fh, 0, 1 << 30)
    assert content == state.manifest() and b"HTTP 404 from the archive" in content

    assert len(state.rendered_in) == 3
    assert trio_thread not in state.rendered_in
