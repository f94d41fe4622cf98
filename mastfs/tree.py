"""The inode table of a mount: selected products laid out as directories and files.

NESTED is `obs_collection/obs_id/productFilename` (MISSION/DATASET/FILE), the folders of MAST's
nested downloads and of astroquery's `mastDownload/`, with DATASET the product row's `obs_id`.
A file listed under several datasets (association, pool and guide-star files are shared) is one
inode linked from each folder, like a hard link; rows equal in (`dataURI`, folder) collapse.
FLAT puts each distinct `dataURI` once at the root. `manifest.html` and `selection.csv` sit at
the root in both layouts, and so does `references/` when the mount shows calibration reference
files (`--references`): one file per reference, however many products name it.

Inodes are deterministic so that a file keeps its inode across re-selections and remounts (an
open handle survives a re-selection): the root is 1, the two virtual files 2 and 3, a product's
inode is a hash of its `dataURI` and a directory's a hash of its archive path, all in
[FIRST_HASHED_INODE, 2**63). Hash collisions, astronomically rare, are resolved by rehashing
keys in sorted order, so the result does not depend on the order of the input.

Names come from the archive and are sanitised so none can escape the mount: `/` becomes `_`,
NUL and other control characters are dropped, `.`, `..` and empty names become `_`/`__`, and a
name is cut to 255 UTF-8 bytes keeping its suffix and extension (`_cal.fits`). When different
files (or datasets) end up with the same name in one folder, the one whose name needed no
change, then the smallest raw name, then the smallest `dataURI` keeps it; the others get `~2`,
`~3`... before the extension (`x_cal~2.fits`). Real names always win over generated ones, so a
file really named `x~2.fits` keeps that name. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from mastfs.model import Product

log = logging.getLogger(__name__)

NESTED = "nested"
FLAT = "flat"
LAYOUTS = (NESTED, FLAT)

ROOT_INODE = 1
MANIFEST_INODE = 2
SELECTION_CSV_INODE = 3
MANIFEST = "manifest.html"
SELECTION_CSV = "selection.csv"
VIRTUAL_FILES = {MANIFEST: MANIFEST_INODE, SELECTION_CSV: SELECTION_CSV_INODE}
# The mirror of the product tree holding each FITS product's header text (`headers.py`).
HEADERS = "headers"
HEADERS_INODE = 4
HEADER_SUFFIX = ".txt"
RESERVED = (*VIRTUAL_FILES, HEADERS)
# The calibration reference files the products name (`calibration.py`), when shown.
REFERENCES = "references"
REFERENCES_INODE = 5

FIRST_HASHED_INODE = 1000
_INODE_SPAN = 2**63 - FIRST_HASHED_INODE
NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in one directory. A product linked from several folders has one Entry per
    folder, all with the same inode; `Tree.entry(inode)` returns the canonical (first) one."""

    inode: int
    name: str
    is_dir: bool
    product: Product | None = None
    virtual: str | None = None
    # The header text of `product` (under `headers/`), not its bytes.
    header: bool = False


def _split_extension(name: str) -> tuple[str, str]:
    """`x_cal.fits` → (`x_cal`, `.fits`); the extension starts at the first dot after the last
    `_`, so `x.fits.gz` keeps `.fits.gz` and `v1.0_spec.fits` keeps `.fits`."""
    start = name.rfind("_") + 1
    dot = name.find(".", max(start, 1))
    if dot < 0:
        return name, ""
    return name[:dot], name[dot:]


def _parts(name: str) -> tuple[str, str, str]:
    """(head, suffix, extension): `x_cal.fits` → (`x`, `_cal`, `.fits`), so that shortening
    the head keeps the product type and the extension readable."""
    stem, ext = _split_extension(name)
    if len(ext.encode()) > 64:
        # A long "extension" is not one.
        stem, ext = name, ""
    cut = stem.rfind("_")
    if cut > 0 and len(stem[cut:].encode()) <= 64:
        return stem[:cut], stem[cut:], ext
    return stem, "", ext


def _fit(stem: str, tail: str) -> str:
    """`stem + tail` cut to NAME_MAX bytes by shortening `stem` (never inside a character)."""
    room = NAME_MAX - len(tail.encode())
    name = stem.encode()[:room].decode("utf-8", "ignore") + tail
    return name if name not in ("", ".", "..") else "_" + name


def sanitize_name(raw: str) -> str:
    """A safe single path component for `raw`: never empty, `.`, `..`, or containing `/`/NUL."""
    if raw.isprintable() and "/" not in raw and raw not in ("", ".", ".."):
        name = raw
    else:
        chars = []
        for ch in raw:
            if ch == "/":
                chars.append("_")
            elif 0xD800 <= ord(ch) <= 0xDFFF:
                # A lone surrogate cannot be encoded as a file name.
                chars.append("\ufffd")
            elif unicodedata.category(ch) != "Cc":
                chars.append(ch)
        name = "".join(chars)
        if name in ("", ".", ".."):
            name = "_" * max(1, len(name))
    if len(name) * 4 > NAME_MAX and len(name.encode()) > NAME_MAX:
        head, kind, ext = _parts(name)
        name = _fit(head, kind + ext)
    return name


def _numbered(name: str, n: int) -> str:
    head, kind, ext = _parts(name)
    return _fit(head, f"{kind}~{n}{ext}")


def _assign_names(items: Iterable[tuple[str, str]], reserved: Iterable[str] = ()) -> dict[str, str]:
    """Unique names in one folder for (key, raw name) pairs; see the module docstring."""
    taken = set(reserved)
    wanted = sorted(
        (name != raw, raw, key, name) for key, raw in items for name in (sanitize_name(raw),)
    )
    out: dict[str, str] = {}
    losers = []
    for item in wanted:
        name = item[3]
        if name in taken:
            losers.append(item)
        else:
            taken.add(name)
            out[item[2]] = name
    for _, _, key, name in losers:
        n = 2
        while (candidate := _numbered(name, n)) in taken:
            n += 1
        taken.add(candidate)
        out[key] = candidate
    return out


def _hashed_inode(key: str, attempt: int) -> int:
    data = key.encode("utf-8", "surrogatepass")
    if attempt:
        data += b"\0%d" % attempt
    digest = hashlib.blake2b(data, digest_size=8, person=b"mastfs-inode").digest()
    return FIRST_HASHED_INODE + int.from_bytes(digest, "big") % _INODE_SPAN


def _assign_inodes(keys: Iterable[str]) -> dict[str, int]:
    used: set[int] = set()
    out: dict[str, int] = {}
    for key in sorted(keys):
        attempt = 0
        while (inode := _hashed_inode(key, attempt)) in used:
            attempt += 1
        if attempt:
            log.debug("inode collision for %s resolved after %d rehashes", key, attempt)
        used.add(inode)
        out[key] = inode
    return out


def _file_key(dataURI: str) -> str:
    return "file\0" + dataURI


def _dir_key(*parts: str) -> str:
    return "dir\0" + json.dumps(parts)


def _header_key(dataURI: str) -> str:
    return "header\0" + dataURI


def _header_dir_key(*parts: str) -> str:
    return "headers\0" + json.dumps(parts)


def has_header(p: Product) -> bool:
    """Whether `headers/` shows the product's header text: FITS files (not compressed ones,
    which cannot be read by range)."""
    return p.productFilename.lower().endswith(".fits")


class Tree:
    """Lookups by (parent, name) and by inode are dict look-ups; listings are pre-sorted."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self._entries: dict[int, Entry] = {}
        self._children: dict[int, dict[str, Entry]] = {}
        self._sorted: dict[int, tuple[Entry, ...]] = {}
        self._parents: dict[int, int] = {}
        self._nlink: dict[int, int] = {}
        self._paths: dict[str, list[str]] = {}
        self._row_paths: dict[tuple[str, str, str], str] = {}
        self._products: dict[str, Product] = {}
        self._file_inodes: dict[str, int] = {}
        self._header_links: dict[int, int] = {}
        self._beneath: dict[int, tuple[Product, ...]] = {}

    def lookup(self, parent: int, name: str) -> Entry | None:
        folder = self._children.get(parent)
        return folder.get(name) if folder is not None else None

    def entry(self, inode: int) -> Entry | None:
        return self._entries.get(inode)

    def children(self, inode: int) -> Sequence[Entry]:
        return self._sorted.get(inode, ())

    def parent(self, inode: int) -> int | None:
        """The directory holding directory `inode` (the root is its own parent)."""
        return self._parents.get(inode)

    def nlink(self, inode: int) -> int:
        """Directories: 2 + subdirectories; files: the number of paths; unknown: 0."""
        return self._nlink.get(inode, 0)

    def inodes(self) -> Iterator[int]:
        return iter(self._entries)

    def paths(self, dataURI: str) -> Sequence[str]:
        """Paths of a product relative to the mount, in input order; the first is canonical."""
        return tuple(self._paths.get(dataURI, ()))

    def row_path(self, p: Product) -> str:
        """The path at which the row `p` (its `dataURI` in its dataset) appears; KeyError if
        the row is not in the tree."""
        if self.layout == FLAT:
            return self._paths[p.dataURI][0]
        return self._row_paths[(p.dataURI, p.obs_collection, p.obs_id)]

    def inode_of(self, dataURI: str) -> int | None:
        return self._file_inodes.get(dataURI)

    def lookup_path(self, path: str) -> Entry | None:
        """The entry at a `/`-separated path relative to the mount (`""` is the root)."""
        entry = self._entries[ROOT_INODE]
        for part in path.split("/") if path else ():
            found = self.lookup(entry.inode, part)
            if found is None:
                return None
            entry = found
        return entry

    def products(self) -> list[Product]:
        """Distinct selected products (first row per `dataURI`), in input order."""
        return list(self._products.values())

    def file_count(self) -> int:
        return len(self._products)

    def headers_beneath(self, inode: int) -> Sequence[Product]:
        """Distinct products whose header texts lie under directory `inode` of `headers/`, in
        the order a recursive listing meets them; empty elsewhere."""
        return self._beneath.get(inode, ())

    def _add(self, parent: int, entry: Entry) -> None:
        self._children.setdefault(parent, {})[entry.name] = entry
        self._entries.setdefault(entry.inode, entry)
        if entry.is_dir:
            self._children.setdefault(entry.inode, {})
            self._parents[entry.inode] = parent

    def _finish(self) -> None:
        for inode, folder in self._children.items():
            self._sorted[inode] = tuple(sorted(folder.values(), key=lambda e: e.name))
            self._nlink[inode] = 2 + sum(1 for e in folder.values() if e.is_dir)
        for uri, paths in self._paths.items():
            self._nlink[self._file_inodes[uri]] = len(paths)
        for inode in VIRTUAL_FILES.values():
            self._nlink[inode] = 1
        self._nlink.update(self._header_links)
        if HEADERS_INODE in self._children:
            self._collect(HEADERS_INODE)

    def _collect(self, inode: int) -> tuple[Product, ...]:
        """`_beneath` of a `headers/` directory and of those below it, depth first."""
        found: dict[str, Product] = {}
        for entry in self._sorted[inode]:
            below = self._collect(entry.inode) if entry.is_dir else (entry.product,)
            for p in below:
                if p is not None:
                    found.setdefault(p.dataURI, p)
        self._beneath[inode] = tuple(found.values())
        return self._beneath[inode]


def build_tree(
    selected: Sequence[Product],
    layout: str,
    headers: bool = True,
    references: Sequence[Product] | None = None,
) -> Tree:
    """The tree of `selected` rows in `layout` ("nested" or "flat"), with the `headers/`
    mirror of its FITS products unless `headers` is false, and, unless `references` is None,
    `references/` holding them (calibration reference files, not mirrored in `headers/`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    tree = Tree(layout)
    products = tree._products
    for p in selected:
        products.setdefault(p.dataURI, p)
    # A reference is shown in references/ only, even if a query row had its URI.
    refs = {r.dataURI: r for r in references or () if r.dataURI not in products}
    reserved = RESERVED if references is None else (*RESERVED, REFERENCES)

    # One link per (dataURI, folder), in input order; FLAT has the root as its only folder.
    links: dict[tuple[str, str, str], None] = {}
    for p in selected:
        folder = (p.obs_collection, p.obs_id) if layout == NESTED else ("", "")
        links.setdefault((p.dataURI, *folder), None)
    members: dict[tuple[str, str], list[str]] = {}
    for uri, coll, obs in links:
        members.setdefault((coll, obs), []).append(uri)

    keys = [_file_key(uri) for uri in (*products, *refs)]
    missions: dict[str, list[str]] = {}
    if layout == NESTED:
        for coll, obs in members:
            missions.setdefault(coll, []).append(obs)
        keys += [_dir_key(coll) for coll in missions]
        keys += [_dir_key(coll, obs) for coll, obs in members]
    described = [u for u in products if has_header(products[u])] if headers else []
    keys += [_header_key(uri) for uri in described]
    if layout == NESTED:
        keys += [_header_dir_key(c, o) for c, o in members] + [_header_dir_key(c) for c in missions]
    inodes = _assign_inodes(keys)
    tree._file_inodes = {uri: inodes[_file_key(uri)] for uri in (*products, *refs)}

    tree._entries[ROOT_INODE] = Entry(ROOT_INODE, "", True)
    tree._children[ROOT_INODE] = {}
    tree._parents[ROOT_INODE] = ROOT_INODE
    for name, inode in VIRTUAL_FILES.items():
        tree._add(ROOT_INODE, Entry(inode, name, False, virtual=name))

    # folder -> (its inode, its path prefix inside the mount)
    folders: dict[tuple[str, str], tuple[int, str]] = {("", ""): (ROOT_INODE, "")}
    folder_names: dict[tuple[str, str], tuple[str, str]] = {}
    if layout == NESTED:
        mission_names = _assign_names(((c, c) for c in missions), reserved=reserved)
        for coll, datasets in missions.items():
            m_inode, m_name = inodes[_dir_key(coll)], mission_names[coll]
            tree._add(ROOT_INODE, Entry(m_inode, m_name, True))
            dataset_names = _assign_names((obs, obs) for obs in datasets)
            for obs in datasets:
                d_inode, d_name = inodes[_dir_key(coll, obs)], dataset_names[obs]
                tree._add(m_inode, Entry(d_inode, d_name, True))
                folders[(coll, obs)] = (d_inode, f"{m_name}/{d_name}/")
                folder_names[(coll, obs)] = (m_name, d_name)

    file_names: dict[tuple[str, str], dict[str, str]] = {}
    for folder, uris in members.items():
        file_names[folder] = _assign_names(
            ((u, products[u].productFilename) for u in uris),
            reserved if folders[folder][0] == ROOT_INODE else (),
        )

    # In input order, so that a product's first path (and canonical entry) is its first row's.
    for uri, coll, obs in links:
        f_inode, prefix = folders[(coll, obs)]
        name = file_names[(coll, obs)][uri]
        tree._add(f_inode, Entry(tree._file_inodes[uri], name, False, product=products[uri]))
        tree._paths.setdefault(uri, []).append(prefix + name)
        tree._row_paths[(uri, coll, obs)] = prefix + name
    if headers:
        _add_headers(tree, links, inodes, file_names, folder_names)
    if references is not None:
        _add_references(tree, refs)
    tree._finish()
    return tree


def _add_references(tree: Tree, refs: dict[str, Product]) -> None:
    """`references/`: each reference file once, under its (sanitised) name."""
    tree._add(ROOT_INODE, Entry(REFERENCES_INODE, REFERENCES, True))
    names = _assign_names((uri, r.productFilename) for uri, r in refs.items())
    for uri, ref in refs.items():
        tree._products[uri] = ref
        path = f"{REFERENCES}/{names[uri]}"
        tree._add(REFERENCES_INODE, Entry(tree._file_inodes[uri], names[uri], False, product=ref))
        tree._paths[uri] = [path]
        tree._row_paths[(uri, ref.obs_collection, ref.obs_id)] = path


def _add_headers(
    tree: Tree,
    links: Iterable[tuple[str, str, str]],
    inodes: dict[str, int],
    file_names: dict[tuple[str, str], dict[str, str]],
    folder_names: dict[tuple[str, str], tuple[str, str]],
) -> None:
    """`headers/`: the folders of the FITS products, each product's name plus `.txt`."""
    tree._add(ROOT_INODE, Entry(HEADERS_INODE, HEADERS, True))
    made: set[int] = set()

    def folder(coll: str, obs: str) -> int:
        if tree.layout == FLAT:
            return HEADERS_INODE
        m_name, d_name = folder_names[(coll, obs)]
        m_inode, d_inode = inodes[_header_dir_key(coll)], inodes[_header_dir_key(coll, obs)]
        if m_inode not in made:
            made.add(m_inode)
            tree._add(HEADERS_INODE, Entry(m_inode, m_name, True))
        if d_inode not in made:
            made.add(d_inode)
            tree._add(m_inode, Entry(d_inode, d_name, True))
        return d_inode

    for uri, coll, obs in links:
        p = tree._products[uri]
        if not has_header(p):
            continue
        inode = inodes[_header_key(uri)]
        # Appending a suffix to distinct names keeps them distinct, within NAME_MAX.
        name = _fit(file_names[(coll, obs)][uri], HEADER_SUFFIX)
        tree._add(folder(coll, obs), Entry(inode, name, False, product=p, header=True))
        tree._header_links[inode] = tree._header_links.get(inode, 0) + 1
