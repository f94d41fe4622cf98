"""Pure: the terminal table of `mastfs ls`, grouped by dataset as the overlay's preview is.

Every cell is `safetext.clean`: the table goes to a terminal, and no value from the archive may
move its cursor or change its colours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mastfs.model import Product
from mastfs.safetext import clean
from mastfs.selection import product_level, suffix

_COLUMNS = ("Product Level", "Suffix", "Instrument", "Filter / Grating", "Size", "Access")


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def format_table(
    selected: Sequence[Product], can_read: Callable[[Product], bool], color: bool = False
) -> str:
    groups: dict[str, dict[str, Product]] = {}
    for p in selected:
        groups.setdefault(p.obs_id, {}).setdefault(p.dataURI, p)
    rows: list[tuple[str, ...]] = []
    for dataset in sorted(groups):
        files = sorted(groups[dataset].values(), key=lambda p: p.productFilename)
        rows.append((f"{clean(dataset)} ({len(files)})", *_COLUMNS))
        for p in files:
            access = p.dataRights
            if p.is_exclusive and not can_read(p):
                access += " (locked)"
            cells = (
                "  " + p.productFilename,
                product_level(p),
                suffix(p),
                p.instrument_name.split("/")[0].upper(),
                p.filters,
                human_size(p.size),
                access,
            )
            rows.append(tuple(map(clean, cells)))
    if not rows:
        return "(no files selected)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        header = not row[0].startswith("  ")
        lines.append(f"\033[1m{text}\033[0m" if color and header else text)
    return "\n".join(lines)
