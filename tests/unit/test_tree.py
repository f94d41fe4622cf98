"""Products → inode table: layouts, hard links, de-duplication, names, inode stability."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mastfs import tree as tree_mod
from mastfs.model import Product
from mastfs.selection import Selection, select
from mastfs.tree import (
    FIRST_HASHED_INODE,
    HEADERS,
    HEADERS_INODE,
    MANIFEST,
    MANIFEST_INODE,
    NAME_MAX,
    ROOT_INODE,
    SELECTION_CSV,
    SELECTION_CSV_INODE,
    Entry,
    Tree,
    build_tree,
    sanitize_name,
)
from tests.support.sample_products import EXP, EXP2, GS, L3, POOL, ROWS, products


def walk(tree: Tree, inode: int = ROOT_INODE, prefix: str = "") -> Iterator[tuple[str, Entry]]:
    for child in tree.children(inode):
        path = prefix + child.name
        yield path, child
        if child.is_dir:
            yield from walk(tree, child.inode, path + "/")


def file_paths(tree: Tree) -> dict[str, int]:
    return {path: e.inode for path, e in walk(tree) if not e.is_dir and e.virtual is None}


def assert_consistent(tree: Tree) -> None:
    """Every listing agrees with lookup(), entry() and nlink(); names are safe and unique."""
    seen_dirs = 0
    for inode in [ROOT_INODE, *(e.inode for _, e in walk(tree) if e.is_dir)]:
        children = tree.children(inode)
        names = [c.name for c in children]
        assert names == sorted(names)
        assert len(set(names)) == len(names)
        for c in children:
            assert "/" not in c.name and "\0" not in c.name
            assert c.name not in ("", ".", "..")
            assert len(c.name.encode()) <= NAME_MAX
            assert tree.lookup(inode, c.name) == c
            assert tree.entry(c.inode) is not None
            assert tree.entry(c.inode).inode == c.inode  # type: ignore[union-attr]
        subdirs = sum(1 for c in children if c.is_dir)
        assert tree.nlink(inode) == 2 + subdirs
        seen_dirs += 1
    links: dict[int, int] = {}
    for _, e in walk(tree):
        if not e.is_dir:
            links[e.inode] = links.get(e.inode, 0) + 1
    for inode, count in links.items():
        assert tree.nlink(inode) == count
    for p in tree.products():
        paths = tree.paths(p.dataURI)
        assert paths
        assert all(tree.lookup_path(path).inode == tree.inode_of(p.dataURI) for path in paths)  # type: ignore[union-attr]
        assert tree.nlink(tree.inode_of(p.dataURI)) == len(paths)  # type: ignore[arg-type]


def test_nested_shape() -> None:
    tree = build_tree(products(), "nested")
    assert [c.name for c in tree.children(ROOT_INODE)] == [
        "HST", "JWST", HEADERS, MANIFEST, SELECTION_CSV
    ]  # fmt: skip
    jwst = tree.lookup(ROOT_INODE, "JWST")
    assert jwst is not None and jwst.is_dir
    assert [c.name for c in tree.children(jwst.inode)] == sorted([EXP, EXP2, GS, L3])
    exp = tree.lookup(jwst.inode, EXP)
    assert exp is not None
    assert [c.name for c in tree.children(exp.inode)] == sorted(
        {p.productFilename for p in products() if p.obs_id == EXP}
    )
    assert tree.parent(exp.inode) == jwst.inode and tree.parent(jwst.inode) == ROOT_INODE
    assert tree.nlink(ROOT_INODE) == 5
    assert tree.file_count() == len({p.dataURI for p in products()})
    assert tree.layout == "nested"
    assert_consistent(tree)


def test_virtual_files() -> None:
    for layout in ("nested", "flat"):
        tree = build_tree(products(), layout)
        manifest = tree.lookup(ROOT_INODE, MANIFEST)
        csv = tree.lookup(ROOT_INODE, SELECTION_CSV)
        assert manifest == Entry(MANIFEST_INODE, MANIFEST, False, None, MANIFEST)
        assert csv == Entry(SELECTION_CSV_INODE, SELECTION_CSV, False, None, SELECTION_CSV)
        assert tree.entry(MANIFEST_INODE) == manifest
        root = tree.entry(ROOT_INODE)
        assert root is not None and root.is_dir
    empty = build_tree([], "nested")
    assert [c.name for c in empty.children(ROOT_INODE)] == [HEADERS, MANIFEST, SELECTION_CSV]
    assert empty.file_count() == 0 and empty.nlink(ROOT_INODE) == 3


def test_shared_product_is_one_inode_linked_from_each_dataset() -> None:
    tree = build_tree(products(), "nested")
    pool_uri = ROWS["J10"].dataURI
    paths = tree.paths(pool_uri)
    # First path is the first row's (input order), then the others.
    assert paths == (f"JWST/{EXP}/{POOL}", f"JWST/{L3}/{POOL}", f"JWST/{EXP2}/{POOL}")
    inodes = {tree.lookup_path(p).inode for p in paths}  # type: ignore[union-attr]
    assert inodes == {tree.inode_of(pool_uri)}
    inode = inodes.pop()
    assert tree.nlink(inode) == 3
    canonical = tree.entry(inode)
    assert canonical is not None and canonical.product == ROWS["J10"]
    assert tree.row_path(ROWS["J10b"]) == f"JWST/{L3}/{POOL}"


def test_identical_rows_collapse() -> None:
    tree = build_tree(products(), "nested")
    gs_uri = ROWS["J11"].dataURI
    # Listed under two parents, but both rows name the same dataset folder.
    assert tree.paths(gs_uri) == (f"JWST/{GS}/{ROWS['J11'].productFilename}",)
    assert tree.nlink(tree.inode_of(gs_uri)) == 1  # type: ignore[arg-type]
    assert len(tree.children(tree.lookup_path(f"JWST/{GS}").inode)) == 2  # type: ignore[union-attr]


def test_flat_layout() -> None:
    tree = build_tree(products(), "flat")
    names = [c.name for c in tree.children(ROOT_INODE)]
    distinct = {p.productFilename for p in products()}
    assert names == sorted(distinct | {HEADERS, MANIFEST, SELECTION_CSV})
    assert [c.name for c in tree.children(ROOT_INODE) if c.is_dir] == [HEADERS]
    fits = {p.productFilename for p in products() if p.productFilename.endswith(".fits")}
    assert [c.name for c in tree.children(HEADERS_INODE)] == sorted(f + ".txt" for f in fits)
    assert tree.paths(ROWS["J10"].dataURI) == (POOL,)
    assert tree.row_path(ROWS["J10c"]) == POOL
    assert tree.nlink(ROOT_INODE) == 3
    assert_consistent(tree)


def test_invalid_layout() -> None:
    with pytest.raises(ValueError, match="nested, flat"):
        build_tree(products(), "deep")


def test_inodes_are_stable_across_selections_and_layouts() -> None:
    everything = build_tree(select(products(), Selection.build(guide_stars=True)), "nested")
    recommended = build_tree(select(products(), Selection.build(quick="recommended")), "nested")
    reordered = list(reversed(products()))
    backwards = build_tree(reordered, "nested")
    flat = build_tree(products(), "flat")
    for p in recommended.products():
        assert recommended.inode_of(p.dataURI) == everything.inode_of(p.dataURI)
        assert backwards.inode_of(p.dataURI) == everything.inode_of(p.dataURI)
        assert flat.inode_of(p.dataURI) == everything.inode_of(p.dataURI)
    for path in ("JWST", f"JWST/{L3}", "HST"):
        assert recommended.lookup_path(path).inode == everything.lookup_path(path).inode  # type: ignore[union-attr]
    inodes = list(everything.inodes())
    assert len(inodes) == len(set(inodes))
    fixed = (ROOT_INODE, MANIFEST_INODE, SELECTION_CSV_INODE, HEADERS_INODE)
    hashed = [i for i in inodes if i not in fixed]
    assert all(FIRST_HASHED_INODE <= i < 2**63 for i in hashed)


def test_inode_collisions_are_resolved_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tree_mod._hashed_inode
    # Force every first attempt to collide, so every key but one needs rehashing.
    monkeypatch.setattr(
        tree_mod, "_hashed_inode", lambda key, attempt: 4242 if attempt == 0 else real(key, attempt)
    )
    a = build_tree(products(), "nested")
    b = build_tree(list(reversed(products())), "nested")
    inodes = list(a.inodes())
    assert len(inodes) == len(set(inodes))
    for p in a.products():
        assert a.inode_of(p.dataURI) == b.inode_of(p.dataURI)
    assert_consistent(a)


def product(name: str, uri: str, obs_id: str = "jw01", coll: str = "JWST") -> Product:
    return Product(dataURI=uri, productFilename=name, obs_id=obs_id, obs_collection=coll, size=1)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", ".._.._etc_passwd"),
        (".", "_"),
        ("..", "__"),
        ("", "_"),
        ("a/b", "a_b"),
        ("x\0y.fits", "xy.fits"),
        ("tab\there\n.fits", "tabhere.fits"),
        ("/", "_"),
        (".\0.", "__"),
        ("\ud800x", "\ufffdx"),
        ("ok_cal.fits", "ok_cal.fits"),
        ("x<script>alert(1)</script>&\"'.fits", "x<script>alert(1)<_script>&\"'.fits"),
    ],
)
def test_sanitize_name(raw: str, safe: str) -> None:
    assert sanitize_name(raw) == safe


def test_long_names_keep_their_extension() -> None:
    name = sanitize_name("é" * 300 + "_cal.fits")
    assert len(name.encode()) <= NAME_MAX
    assert name.endswith("é_cal.fits") or name.endswith("_cal.fits")
    assert name.encode().decode() == name


def test_hostile_names_cannot_escape() -> None:
    hostile = ["../../etc/passwd", ".", "..", "a/b", "x\0y", "", "/", "..\0", "\n"]
    rows = [product(n, f"mast:JWST/product/{i}", obs_id=n or "..") for i, n in enumerate(hostile)]
    rows.append(product("f.fits", "mast:X/1", obs_id="../..", coll=".."))
    for layout in ("nested", "flat"):
        tree = build_tree(rows, layout)
        assert_consistent(tree)
        for path, _ in walk(tree):
            parts = path.split("/")
            assert not any(part in ("", ".", "..") for part in parts)
        assert tree.file_count() == len(rows)


def test_name_clashes_get_numbered_suffixes() -> None:
    rows = [
        product("x_cal.fits", "mast:JWST/product/b"),
        product("x_cal.fits", "mast:JWST/product/a"),
        product("x_cal.fits", "mast:JWST/product/c"),
        product("x_cal~2.fits", "mast:JWST/product/real"),
        product("a/b.fits", "mast:JWST/product/slash"),
        product("a_b.fits", "mast:JWST/product/plain"),
        product("data.fits.gz", "mast:JWST/product/g1"),
        product("data.fits.gz", "mast:JWST/product/g2"),
    ]
    expected = {
        "mast:JWST/product/a": "x_cal.fits",
        "mast:JWST/product/b": "x_cal~3.fits",  # ~2 belongs to a real file
        "mast:JWST/product/c": "x_cal~4.fits",
        "mast:JWST/product/real": "x_cal~2.fits",
        "mast:JWST/product/plain": "a_b.fits",  # unchanged names win over sanitised ones
        "mast:JWST/product/slash": "a_b~2.fits",
        "mast:JWST/product/g1": "data.fits.gz",
        "mast:JWST/product/g2": "data~2.fits.gz",
    }
    for order in (rows, list(reversed(rows)), random.Random(7).sample(rows, len(rows))):
        tree = build_tree(order, "nested")
        got = {uri: tree.paths(uri)[0].rsplit("/", 1)[1] for uri in expected}
        assert got == expected
        assert_consistent(tree)


def test_virtual_names_are_reserved_in_flat_root() -> None:
    rows = [product(MANIFEST, "mast:X/m"), product(SELECTION_CSV, "mast:X/s")]
    tree = build_tree(rows, "flat")
    assert tree.paths("mast:X/m") == ("manifest~2.html",)
    assert tree.paths("mast:X/s") == ("selection~2.csv",)
    nested = build_tree([product("f", "mast:X/f", coll=MANIFEST)], "nested")
    assert nested.paths("mast:X/f") == ("manifest~2.html/jw01/f",)


def test_dataset_name_clash() -> None:
    rows = [
        product("f.fits", "mast:X/1", obs_id="a/b"),
        product("f.fits", "mast:X/2", obs_id="a_b"),
    ]
    tree = build_tree(rows, "nested")
    assert tree.paths("mast:X/1") == ("JWST/a_b~2/f.fits",)
    assert tree.paths("mast:X/2") == ("JWST/a_b/f.fits",)
    assert tree.lookup_path("JWST/a_b~2").inode != tree.lookup_path("JWST/a_b").inode  # type: ignore[union-attr]


def test_unknown_lookups() -> None:
    tree = build_tree(products(), "nested")
    assert tree.lookup(ROOT_INODE, "nope") is None
    assert tree.lookup(123456789, "JWST") is None
    assert tree.entry(5) is None
    assert tree.children(MANIFEST_INODE) == ()
    assert tree.nlink(5) == 0
    assert tree.paths("mast:nothing") == ()
    assert tree.inode_of("mast:nothing") is None
    assert tree.lookup_path("JWST/nope") is None
    assert tree.lookup_path("").inode == ROOT_INODE  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        tree.row_path(dataclasses.replace(ROWS["J1"], obs_id="elsewhere"))


def test_large_program() -> None:
    rows = []
    for i in range(20_000):
        obs = f"jw02734001001_02101_{i // 8:05d}"
        name = f"{obs}-seg{i % 8:03d}_nis_cal.fits"
        rows.append(product(name, f"mast:JWST/product/{name}", obs_id=obs))
        if i % 100 == 0:  # a shared file in every hundredth dataset
            rows.append(product(POOL, ROWS["J10"].dataURI, obs_id=obs))
    tree = build_tree(rows, "nested")
    assert tree.file_count() == 20_001
    assert tree.nlink(tree.inode_of(ROWS["J10"].dataURI)) == 200  # type: ignore[arg-type]
    assert len(tree.children(tree.lookup_path("JWST").inode)) == 2500  # type: ignore[union-attr]
    # Files, dataset folders and JWST, again under headers/ (but the pool, not FITS), the root
    # and three fixed entries.
    assert len(set(tree.inodes())) == (20_001 + 2500 + 1) + (20_000 + 2500 + 1) + 1 + 3


_hostile_text = st.lists(
    st.sampled_from(["/", ".", "\0", "\n", "a", "_", "~2", "é", "\ud800", " ", "x.fits"]),
    max_size=12,
).map("".join)


@given(st.text())
def test_sanitizer_never_yields_unsafe_names(raw: str) -> None:
    name = sanitize_name(raw)
    assert name not in ("", ".", "..")
    assert "/" not in name and "\0" not in name
    assert len(name.encode("utf-8")) <= NAME_MAX


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(_hostile_text, _hostile_text, st.integers(0, 6)),
        max_size=25,
    ),
    st.sampled_from(["nested", "flat"]),
)
def test_any_input_gives_a_consistent_tree(rows: list[tuple[str, str, int]], layout: str) -> None:
    prods = [product(name, f"mast:X/{uri_id}", obs_id=obs) for name, obs, uri_id in rows]
    tree = build_tree(prods, layout)
    assert_consistent(tree)
    assert tree.file_count() == len({p.dataURI for p in prods})
    for path, _ in walk(tree):
        assert not any(part in ("", ".", "..") for part in path.split("/"))


def test_headers_mirror_the_fits_products() -> None:
    tree = build_tree(products(), "nested")
    fits = [p for p in tree.products() if p.productFilename.endswith(".fits")]
    assert fits and len(fits) < tree.file_count()
    for p in fits:
        header_paths = [f"{HEADERS}/{path}.txt" for path in tree.paths(p.dataURI)]
        entries = [tree.lookup_path(path) for path in header_paths]
        assert all(e is not None and e.header and e.product == p for e in entries)
        inodes = {e.inode for e in entries if e is not None}
        assert len(inodes) == 1 and inodes != {tree.inode_of(p.dataURI)}
        assert tree.nlink(inodes.pop()) == len(header_paths)
    # Listing order, each product once, beneath each folder of headers/.
    beneath = tree.headers_beneath(HEADERS_INODE)
    assert sorted(p.dataURI for p in beneath) == sorted(p.dataURI for p in fits)
    jwst = tree.lookup_path(f"{HEADERS}/JWST")
    assert jwst is not None
    assert set(tree.headers_beneath(jwst.inode)) < set(beneath)
    assert tree.headers_beneath(ROOT_INODE) == ()
    assert build_tree(products(), "nested", headers=False).lookup(ROOT_INODE, HEADERS) is None
