"""`readdir` offsets: each entry's offset is where the next call resumes, whatever the kernel's
buffer took, so a listing read in any number of calls is the listing read in one."""

from __future__ import annotations

from pyfuse3 import InodeT

from mastfs.fs import MastOperations
from mastfs.tree import ROOT_INODE
from tests.support.catalog import catalog_rows
from tests.support.operations import ctx, listdir, lookup_path, readdir

SEG1 = "jw02734001001_02101_00001-seg001_nis"


async def test_the_root_lists_the_collection_and_the_views(ops: MastOperations) -> None:
    entries = await readdir(ops, ROOT_INODE)
    assert [name for name, _, _ in entries] == ["JWST", "headers", "manifest.html", "selection.csv"]
    assert [offset for _, _, offset in entries] == [1, 2, 3, 4]
    # Each entry's attributes are those a lookup of its name gives.
    for name, attr, _ in entries:
        looked_up = await ops.lookup(InodeT(ROOT_INODE), name.encode(), ctx())
        assert (attr.st_ino, attr.st_mode, attr.st_size) == (
            looked_up.st_ino,
            looked_up.st_mode,
            looked_up.st_size,
        )


async def test_a_dataset_lists_its_products(ops: MastOperations) -> None:
    """Every product of the dataset but the guide-star files (not selected by default)."""
    folder = await lookup_path(ops, f"JWST/{SEG1}")
    names = [name for name, _, _ in await readdir(ops, folder.st_ino)]
    expected = {
        r["productFilename"]
        for r in catalog_rows("2734")
        if r["obs_id"] == SEG1 and not r["productSubGroupDescription"].startswith("GS-")
    }
    assert set(names) == expected and len(names) == len(expected)
    assert names == sorted(names)


async def test_every_start_id_resumes_at_that_child(ops: MastOperations) -> None:
    folder = (await lookup_path(ops, f"JWST/{SEG1}")).st_ino
    whole = [(name, offset) for name, _, offset in await readdir(ops, folder)]
    assert len(whole) > 5
    for start in range(len(whole) + 1):
        rest = [(name, offset) for name, _, offset in await readdir(ops, folder, start)]
        assert rest == whole[start:], start


async def test_a_full_buffer_stops_the_listing_and_the_next_call_continues(
    ops: MastOperations,
) -> None:
    jwst = (await lookup_path(ops, "JWST")).st_ino
    whole = [name for name, _, _ in await readdir(ops, jwst)]
    for capacity in (1, 2, 5):
        pages: list[list[str]] = []
        offset = 0
        while page := await readdir(ops, jwst, offset, capacity=capacity):
            assert len(page) <= capacity
            pages.append([name for name, _, _ in page])
            offset = page[-1][2]
        assert [name for page in pages for name in page] == whole, capacity
        assert len(pages) == -(-len(whole) // capacity)
    assert await listdir(ops, jwst) == whole


async def test_a_start_id_past_the_end_lists_nothing(ops: MastOperations) -> None:
    count = len(await readdir(ops, ROOT_INODE))
    assert await readdir(ops, ROOT_INODE, count) == []
    assert await readdir(ops, ROOT_INODE, count + 10) == []
