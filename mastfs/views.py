"""The bytes of the two virtual files at the mount's root: `selection.csv` and `manifest.html`.

`selection.csv` is the download overlay's "Export Selected File List": its first six columns
are exactly the overlay's (`Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating`),
followed by `URI,Size,Access,Path,Category` (Category: MAST's `productType`). `manifest.html`
is the download bundle's manifest: the summary, then one row per file with the Portal's
columns `URI, File, Access, Status, Logged In User` and the Portal's status wording (see
`status`). Both are deterministic for a given input; neither contains the time unless the
caller passes one. Every value from the archive is HTML-escaped in the manifest; in the CSV, a
cell a spreadsheet would read as a formula is neutralised (`csv_cell`). Pure: no I/O.
"""

from __future__ import annotations

import csv
import html
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from mastfs.model import Product, User
from mastfs.selection import Summary, format_summary, product_level, suffix
from mastfs.tree import Tree

log = logging.getLogger(__name__)

PORTAL_CSV_COLUMNS = ("Dataset", "Filename", "Product Level", "Suffix", "Instrument",
                      "Filter / Grating")  # fmt: skip
# Category: MAST's productType (SCIENCE, AUXILIARY, ..., CALIBRATION for `references/`).
CSV_COLUMNS = (*PORTAL_CSV_COLUMNS, "URI", "Size", "Access", "Path", "Category")
MANIFEST_COLUMNS = ("URI", "File", "Access", "Status", "Logged In User")
ANONYMOUS = "anonymous"
# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def instrument(p: Product) -> str:
    """The Instrument column: `NIRISS` from `NIRISS/SOSS`."""
    return p.instrument_name.split("/", 1)[0].strip().upper()


def _rows(selected: Sequence[Product]) -> list[Product]:
    """One row per (dataset, dataURI), the first, in input order."""
    seen: dict[tuple[str, str, str], Product] = {}
    for p in selected:
        seen.setdefault((p.obs_collection, p.obs_id, p.dataURI), p)
    return list(seen.values())


def _path(tree: Tree, p: Product) -> str:
    try:
        return tree.row_path(p)
    except KeyError:
        return ""


def csv_cell(text: str) -> str:
    """`text` as a CSV cell no spreadsheet runs: one starting with `=`, `+`, `-`, `@`, a tab or
    a line break gets a leading `'`, as OWASP recommends (quotes are the csv module's job)."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def selection_rows(selected: Sequence[Product], tree: Tree) -> list[tuple[str | int, ...]]:
    """The rows of `selection.csv` as values (`CSV_COLUMNS`), grouped by dataset: datasets
    sorted, files sorted."""
    return [
        (
            p.obs_id,
            p.productFilename,
            product_level(p),
            suffix(p),
            instrument(p),
            p.filters,
            p.dataURI,
            p.size,
            p.dataRights,
            _path(tree, p),
            p.productType,
        )
        for p in sorted(_rows(selected), key=lambda p: (p.obs_id, p.productFilename, p.dataURI))
    ]


def selection_csv(selected: Sequence[Product], tree: Tree) -> bytes:
    """UTF-8 CSV (RFC 4180, CRLF) of `selection_rows`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for cells in selection_rows(selected, tree):
        writer.writerow([csv_cell(c) if isinstance(c, str) else c for c in cells])
    return out.getvalue().encode("utf-8")


def status(
    p: Product,
    path: str,
    first: tuple[str, str] | None,
    user: User | None,
    can_read: Callable[[Product], bool],
    error: str | None,
) -> str:
    """The Status column for row `p` at `path`; `first` is (file name, obs_id) of the row that
    listed the same file earlier, None for a first occurrence.

    Wording follows the Portal's manifest: `OK` / `Duplicate of file pool.csv in folder
    jw0133_01_01` when anonymous; `<path> associated with <obs_id> SUCCESS` / `... Duplicate of
    file pool.csv associated with <obs_id>` when logged in. An exclusive-access file the user
    cannot read, and a file whose fetch failed during this mount, say so instead.
    """
    if error is not None:
        return f"Error: {error}"
    if p.is_exclusive and not can_read(p):
        program = p.proposal_id or "unknown"
        if user is None:
            return (
                f"Not authorized: exclusive-access data of program {program}; "
                "log in with an authorized MAST token"
            )
        return (
            f"Not authorized: exclusive-access data of program {program}; "
            f"user {user.display_name} is not authorized to read it"
        )
    if user is None:
        if first is None:
            return "OK"
        return f"Duplicate of file {first[0]} in folder {first[1]}"
    done = f"{path} associated with {p.obs_id}"
    if first is None:
        return f"{done} SUCCESS"
    return f"{done} Duplicate of file {first[0]} associated with {first[1]}"


_STYLE = (
    "body{font-family:sans-serif;margin:1em}"
    "table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}"
    "th{background:#eee}"
    "td.EXCLUSIVE_ACCESS{background:#ffc}"
)


def manifest_html(
    selected: Sequence[Product],
    tree: Tree,
    summary: Summary,
    user: User | None,
    can_read: Callable[[Product], bool],
    errors: Mapping[str, str],
    generated: str | None = None,
    notes: Sequence[str] = (),
) -> bytes:
    """The manifest: one row per (dataset, file) in input order, duplicates after the first;
    `notes` (what the mount could not show, e.g. missing reference files) after the summary."""
    e = html.escape
    who = user.display_name if user is not None else ANONYMOUS
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>mastfs download manifest</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>Download manifest</h1>",
        f'<p class="summary">{e(format_summary(summary, user))}</p>',
        f"<p>Folder organization: {e(tree.layout.upper())}. Logged in user: {e(who)}.</p>",
    ]
    parts += [f'<p class="note">{e(note)}</p>' for note in notes]
    if generated:
        parts.append(f"<p>Generated {e(generated)}.</p>")
    parts += [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in MANIFEST_COLUMNS) + "</tr></thead>",
        "<tbody>",
    ]
    first_seen: dict[str, tuple[str, str]] = {}
    for p in _rows(selected):
        path = _path(tree, p) or p.productFilename
        first = first_seen.get(p.dataURI)
        if first is None:
            canonical = tree.paths(p.dataURI)
            name = canonical[0].rsplit("/", 1)[-1] if canonical else p.productFilename
            first_seen[p.dataURI] = (name, p.obs_id)
        text = status(p, path, first, user, can_read, errors.get(p.dataURI))
        access = p.dataRights.upper()
        parts.append(
            "<tr>"
            f"<td>{e(p.dataURI)}</td>"
            f'<td><a href="{e(quote(path))}">{e(path)}</a></td>'
            f'<td class="{e(access)}">{e(access)}</td>'
            f"<td>{e(text)}</td>"
            f"<td>{e(who)}</td>"
            "</tr>"
        )
    parts += ["</tbody>", "</table>", "</body>", "</html>", ""]
    return "\n".join(parts).encode("utf-8")
