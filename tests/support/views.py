"""Reading `manifest.html` and `selection.csv` as their users do, and golden files.

The manifest is parsed with the standard library's HTML parser (what a browser's tokenizer sees:
tags, attributes, text with character references decoded); the CSV with the `csv` module.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
UPDATE_GOLDEN = os.environ.get("MASTFS_UPDATE_GOLDEN") == "1"

PORTAL_HEADER = "Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating"
OUR_COLUMNS = ["URI", "Size", "Access", "Path", "Category"]
MANIFEST_HEADER = ["URI", "File", "Access", "Status", "Logged In User"]


@dataclass
class ManifestRow:
    uri: str
    file: str
    href: str
    access: str
    access_class: str
    status: str
    user: str


@dataclass
class Manifest:
    doctype: str = ""
    charset: str = ""
    title: str = ""
    tags: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[ManifestRow] = field(default_factory=list)
    # The same body rows as plain cell texts, in page order.
    cells: list[list[str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    summary: str = ""
    paragraphs: list[str] = field(default_factory=list)
    # Every text node of the page, in order (title and styles included).
    text: list[str] = field(default_factory=list)
    tables: int = 0


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Manifest()
        self._open: list[str] = []
        self._text: list[str] | None = None
        self._cells: list[tuple[str, dict[str, str | None]]] = []
        self._cell_attrs: dict[str, str | None] = {}
        self._href = ""
        self._p_class = ""

    def handle_decl(self, decl: str) -> None:
        self.out.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.tags.append(tag)
        attr = dict(attrs)
        if tag == "meta" and "charset" in attr:
            self.out.charset = attr["charset"] or ""
        if tag in ("meta", "br", "link"):
            return
        self._open.append(tag)
        if tag == "table":
            self.out.tables += 1
        elif tag == "tr":
            self._cells = []
            self._href = ""
        elif tag in ("td", "th", "p"):
            self._text = []
            self._cell_attrs = attr
            if tag == "p":
                self._p_class = attr.get("class") or ""
        elif tag == "a":
            self._href = attr.get("href") or ""
            self.out.links.append(self._href)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "p") and self._text is not None:
            text = "".join(self._text)
            self._text = None
            if tag == "p":
                self.out.paragraphs.append(text)
                if self._p_class == "summary":
                    self.out.summary = text
            else:
                self._cells.append((text, self._cell_attrs))
        elif tag == "tr":
            texts = [c[0] for c in self._cells]
            if "thead" in self._open:
                self.out.header = texts
            elif "tbody" in self._open:
                assert len(texts) == len(MANIFEST_HEADER), texts
                self.out.cells.append(texts)
                self.out.rows.append(
                    ManifestRow(
                        uri=texts[0],
                        file=texts[1],
                        href=self._href,
                        access=texts[2],
                        access_class=self._cells[2][1].get("class") or "",
                        status=texts[3],
                        user=texts[4],
                    )
                )
        while self._open and self._open.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.out.text.append(data)
        if self._open and self._open[-1] == "title":
            self.out.title += data
        if self._text is not None:
            self._text.append(data)


def parse_manifest(data: bytes) -> Manifest:
    parser = _Parser()
    parser.feed(data.decode("utf-8"))
    parser.close()
    return parser.out


def check_manifest_structure(m: Manifest, user: str) -> None:
    """The Portal manifest's shape: one table, its five columns, every row's user and link."""
    assert m.doctype.lower() == "doctype html"
    assert m.tables == 1
    assert m.header == MANIFEST_HEADER
    assert m.rows, "the manifest lists files"
    for row in m.rows:
        assert row.user == user
        assert row.access in ("PUBLIC", "EXCLUSIVE_ACCESS")
        assert row.access_class == row.access
        assert unquote(row.href) == row.file
        assert row.uri.startswith("mast:")


def read_csv(data: bytes) -> tuple[str, list[dict[str, str]]]:
    """(first line, rows as dicts) of `selection.csv`."""
    text = data.decode("utf-8")
    first = text.split("\r\n", 1)[0]
    return first, list(csv.DictReader(io.StringIO(text, newline="")))


def check_golden(name: str, data: bytes) -> None:
    """`data` must equal tests/golden/NAME; MASTFS_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN_DIR / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    if not path.exists():
        pytest.fail(f"missing golden file {path}; run with MASTFS_UPDATE_GOLDEN=1 to create it")
    want = path.read_bytes()
    if data != want:
        diff = difflib.unified_diff(
            want.decode("utf-8", "replace").splitlines(),
            data.decode("utf-8", "replace").splitlines(),
            f"golden/{name}",
            "generated",
            lineterm="",
            n=1,
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(
            f"{name} differs from its golden file (MASTFS_UPDATE_GOLDEN=1 to accept):\n{shown}"
        )
