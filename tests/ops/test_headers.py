"""`headers/` through the operations, no kernel: versions, access, listings that fetch ahead."""

from __future__ import annotations

import errno

import trio
from pyfuse3 import FileHandleT, InodeT

from mastfs.fs import MastOperations
from mastfs.headers import WHOLE_MAX
from mastfs.selection import Selection
from mastfs.tree import HEADERS
from tests.ops.conftest import MakeOps
from tests.support.headers import astropy_text
from tests.support.operations import ctx, fuse_errno, listdir, lookup_path
from tests.support.sim import Sim

CAL = "mast:JWST/product/jw02734001001_02101_00001-seg003_nis_cal.fits"
SEG = "jw02734001001_02101_00001-seg003_nis"
CAL_HEADER = f"headers/JWST/{SEG}/{SEG}_cal.fits.txt"


async def read_to_end(ops: MastOperations, fh: FileHandleT, step: int = 4096) -> bytes:
    """Read as `cat` does a file whose size says 0: until a read returns nothing."""
    parts, offset = [], 0
    while chunk := await ops.read(fh, offset, step):
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


async def test_a_changed_product_gets_a_new_text_never_a_mix(make_ops: MakeOps, sim: Sim) -> None:
    try:
        async with make_ops(headers=True, metadata_ttl=0) as ops:
            inode = (await lookup_path(ops, CAL_HEADER)).st_ino
            assert (await ops.getattr(inode, ctx())).st_size == 0
            old = await ops.open(inode, 0, ctx())
            first = await read_to_end(ops, old.fh)
            assert first.decode() == astropy_text(sim.file(CAL))
            sim.change(CAL)
            # The open revalidates (metadata TTL 0): the new version's text, whole.
            new = await ops.open(inode, 0, ctx())
            second = await read_to_end(ops, new.fh)
            assert second.decode() == astropy_text(sim.file(CAL)) and second != first
            # The file opened before reads the old version's text to its end.
            assert await read_to_end(ops, old.fh, step=1000) == first
            for fh in (old.fh, new.fh):
                await ops.release(fh)
    finally:
        sim.change(CAL, generation=0)


async def test_an_exclusive_access_header_is_as_closed_as_its_product(make_ops: MakeOps) -> None:
    async with make_ops("6543", headers=True) as ops:
        folder = await lookup_path(ops, "headers/JWST")
        datasets = await listdir(ops, folder.st_ino)
        dataset = next(d for d in datasets if d.startswith("jw06543") and "-o" not in d)
        inode = (await lookup_path(ops, f"headers/JWST/{dataset}")).st_ino
        name = next(n for n in await listdir(ops, inode) if n.endswith("_cal.fits.txt"))
        header = (await lookup_path(ops, f"headers/JWST/{dataset}/{name}")).st_ino
        assert await fuse_errno(ops.open(InodeT(header), 0, ctx())) == errno.EACCES


async def test_listing_then_reading_builds_the_texts_beneath(make_ops: MakeOps, sim: Sim) -> None:
    async with make_ops(headers=True) as ops:
        assert ops.headers is not None
        folder = (
            await lookup_path(ops, "headers/JWST/jw02734001001_02101_00001-seg004_nis")
        ).st_ino
        names = await listdir(ops, folder)
        assert len(names) == 5
        # A listing alone fetches nothing (`ls -lR` or `find` over a whole mount)...
        for _ in range(100):
            await trio.sleep(0)
        assert ops.headers.stats() == {
            "texts": 0, "text_bytes": 0, "texts_ahead": 0, "queued": 0, "building": 0
        }
        # ...a read after it builds the folder's other texts in the background.
        first = await ops.lookup(InodeT(folder), names[0].encode(), ctx())
        await ops.release((await ops.open(first.st_ino, 0, ctx())).fh)
        with trio.fail_after(60):  # a deadline for the background builds, not a timing
            while ops.headers.stats()["texts"] < 5:
                await trio.sleep(0.01)
        # Built and kept: reading them now fetches nothing more.
        sim.reset_stats()
        for name in names:
            attr = await ops.lookup(InodeT(folder), name.encode(), ctx())
            info = await ops.open(attr.st_ino, 0, ctx())
            assert (await read_to_end(ops, info.fh)).startswith(b"# HDU 0 PRIMARY")
            await ops.release(info.fh)
        uris = {ops.state.snapshot.tree.lookup(folder, n).product.dataURI for n in names}  # type: ignore[union-attr]
        assert sum(sim.gets(uri) + sim.heads(uri) for uri in uris) == 0


async def test_a_small_product_is_read_whole_in_one_request(make_ops: MakeOps, sim: Sim) -> None:
    """A 515 KB guide-star product of five HDUs: one GET, not one per header."""
    async with make_ops(headers=True, selection=Selection.build(guide_stars=True)) as ops:
        tree = ops.state.snapshot.tree
        small = next(p for p in tree.products() if p.productFilename.endswith("13712_cal.fits"))
        assert small.size <= WHOLE_MAX
        entry = tree.lookup_path(f"{HEADERS}/{tree.paths(small.dataURI)[0]}.txt")
        assert entry is not None
        info = await ops.open(InodeT(entry.inode), 0, ctx())
        text = await read_to_end(ops, info.fh)
        await ops.release(info.fh)
        assert text.decode() == astropy_text(sim.file(small.dataURI))
        assert text.count(b"# HDU ") > 2
        assert sim.gets(small.dataURI) == 1 and sim.sent(small.dataURI) == small.size
