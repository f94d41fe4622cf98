"""The directory view: `/files/<collection>/<dataset>/<filename>` as an nginx-style autoindex.

Listings are HTML with relative links; a file link serves the same bytes as `Download/file`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from mastfs.sim.api_downloads import serve_file
from mastfs.sim.faults import RequestPlan
from mastfs.sim.handler import Route
from mastfs.sim.portal import error_body

if TYPE_CHECKING:
    from mastfs.sim.content import SimFile
    from mastfs.sim.handler import BaseHandler, Request


@dataclass
class Listing:
    """The `/files/` tree: collection → dataset → filename → (uri, size, mtime)."""

    tree: dict[str, dict[str, dict[str, tuple[str, int, float]]]]

    @classmethod
    def build(cls, files: Iterable[SimFile]) -> Listing:
        tree: dict[str, dict[str, dict[str, tuple[str, int, float]]]] = {}
        for f in files:
            folder = tree.setdefault(f.collection, {}).setdefault(f.dataset, {})
            folder.setdefault(f.filename, (f.uri, f.size, f.last_modified))
        return cls(tree)


def files(h: BaseHandler, req: Request, _: RequestPlan) -> None:
    """A listing, a redirect to one, or a file (the file checks its own faults)."""
    path = req.path
    parts = [unquote(p) for p in path.split("/")[2:]]
    if path == "/files" or (len(parts) in (1, 2) and parts[-1] != ""):
        # Directory without its trailing slash: redirect like nginx, so relative links work.
        h.send(301, b"", [("Location", path + "/")], stat="files")
        return
    tree = h.sim.listing().tree
    if len(parts) == 3 and parts[2]:
        entry = tree.get(parts[0], {}).get(parts[1], {}).get(parts[2])
        if entry is None:
            _not_found(h, path)
            return
        serve_file(h, req.method, entry[0], h.sim.file(entry[0]))
        return
    plan = h.sim.faults.plan(path, False)
    if plan.latency:
        time.sleep(plan.latency)
    if plan.error_status is not None:
        h.send_json(plan.error_status, error_body("simulated server error"), stat="files")
        return
    names = [p for p in parts if p]
    rows: list[tuple[str, bool, int, float]]
    if not names:
        rows = [(c, True, 0, _newest(tree[c].values())) for c in sorted(tree)]
    elif len(names) == 1 and names[0] in tree:
        datasets = tree[names[0]]
        rows = [(d, True, 0, _newest([datasets[d]])) for d in sorted(datasets)]
    elif len(names) == 2 and names[1] in tree.get(names[0], {}):
        folder = tree[names[0]][names[1]]
        rows = [(n, False, folder[n][1], folder[n][2]) for n in sorted(folder)]
    else:
        _not_found(h, path)
        return
    body = _autoindex(path, rows)
    h.send(200, body, [("Content-Type", "text/html; charset=utf-8")], plan, stat="files")


def _not_found(h: BaseHandler, path: str) -> None:
    body = f"<html><body><h1>404 Not Found</h1><p>{html.escape(path)}</p></body></html>\n"
    h.send(404, body.encode(), [("Content-Type", "text/html; charset=utf-8")], stat="files")


def _newest(folders: Iterable[dict[str, tuple[str, int, float]]]) -> float:
    return max((e[2] for folder in folders for e in folder.values()), default=0.0)


def _autoindex(path: str, rows: list[tuple[str, bool, int, float]]) -> bytes:
    """nginx-style autoindex HTML: relative hrefs, directories end with `/`."""
    title = html.escape(path)
    out = [
        f"<html>\n<head><title>Index of {title}</title></head>\n<body>\n",
        f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>\n',
    ]
    for name, is_dir, size, mtime in rows:
        shown = name + ("/" if is_dir else "")
        href = quote(name) + ("/" if is_dir else "")
        stamp = time.strftime("%d-%b-%Y %H:%M", time.gmtime(mtime))
        pad = " " * max(1, 51 - len(shown))
        size_text = "-" if is_dir else str(size)
        out.append(
            f'<a href="{html.escape(href)}">{html.escape(shown)}</a>{pad}{stamp} {size_text:>19}\n'
        )
    out.append("</pre><hr></body>\n</html>\n")
    return "".join(out).encode()


ROUTES = (Route(("/files",), files, prefix="/files/", own_faults=True),)
