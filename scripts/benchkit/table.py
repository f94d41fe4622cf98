"""The results table: rows rendered as markdown, and the generated block of docs/performance.md.

The block sits between two markers; everything around them is written by hand and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import DOC

BEGIN = "<!-- bench:begin (scripts/bench writes between these markers) -->"
END = "<!-- bench:end -->"
COLUMNS = ("measurement", "mastfs", "reference (same run)", "ratio", "goal", "met?")
JSON_COLUMNS = ("measurement", "mastfs", "reference", "ratio", "goal", "met")


@dataclass
class Row:
    """One line of the table; `ratio_text` replaces the plain "1.23×" of `ratio` when set."""

    measurement: str
    mastfs: str
    reference: str
    ratio: float | None = None
    ratio_text: str = ""
    goal: str = "–"
    met: bool | None = None

    def render(self) -> list[str]:
        ratio = self.ratio_text or (f"{self.ratio:.2f}×" if self.ratio is not None else "–")
        met = "–" if self.met is None else ("yes" if self.met else "**no**")
        return [self.measurement, self.mastfs, self.reference, ratio, self.goal, met]

    def to_json(self) -> dict[str, str]:
        return dict(zip(JSON_COLUMNS, self.render(), strict=True))


def gb(v: float | None) -> str:
    return f"{v:.2f} GB/s" if v is not None else "–"


def secs(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f} ms"


def render_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in row.render()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_block(
    command: str, started: str, seconds: float, info: dict[str, Any], table: str, notes: list[str]
) -> str:
    """The text between the markers: what was measured where, the table, the notes."""
    load_start, load_end = info["loadavg_start"], info["loadavg_end"]
    header = (
        f"Measured {started} UTC by `{command}` in {seconds:.0f} s on "
        f"mastfs {info['mastfs_code']}, "
        f"{info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, Linux "
        f"{info['kernel']}, Python {info['python']}; {info['rclone']}; {info['httpdirfs']}; "
        f"1-min load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at end. "
        "GB/s = 10⁹ bytes/s. Ratios: mastfs ÷ reference for throughput (higher is better), "
        "reference time ÷ mastfs time for times and latencies (higher is better)."
    )
    text = "".join(f"\n- {n}" for n in notes)
    return f"{header}\n\n{table}\n" + (f"\nNotes:{text}\n" if text else "")


def write_doc(block: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what is between the markers of DOC (or append the markers) with `block`."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n\n"
    section = f"{begin}\n{block}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)
