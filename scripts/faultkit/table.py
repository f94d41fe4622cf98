"""The matrix's outcomes rendered as one markdown table, and the generated block of
docs/integrity.md (between its markers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .cases import CASES
from .scenarios import Outcome

BEGIN = "<!-- fault-matrix:begin (scripts/fault-matrix --doc writes this block) -->"
END = "<!-- fault-matrix:end -->"
_WHAT = {case.name: case.what for case in CASES}


def _errors(out: Outcome) -> str:
    if not out.errors:
        return "0"
    return ", ".join(f"{n} {name}" for name, n in sorted(out.errors.items()))


def _slowest(out: Outcome) -> str:
    if out.wedged:
        return f"**hung** (reader killed), limit {out.limit:g}"
    mark = "≤" if out.slowest <= out.limit else "**>**"
    return f"{out.slowest:.2f} {mark} {out.limit:g}"


def render(outcomes: Sequence[Outcome], timeout: float) -> str:
    """The table, a line on what it shows, and the notes of each row below it."""
    lines = [
        f"| case | what | reader | corrupt bytes | errors | slowest read (s) vs --timeout "
        f"{timeout:g} + 2 | recovered on the same mount |",
        "| --- | --- | --- | ---: | --- | --- | --- |",
    ]
    notes: list[str] = []
    for out in outcomes:
        what = _WHAT.get(out.case, "")
        if out.skipped is not None:
            lines.append(f"| {out.case} | {what} | – | – | – | – | skipped |")
            continue
        lines.append(
            f"| {out.case} | {what} | {out.reader} | {out.corrupt} | {_errors(out)} | "
            f"{_slowest(out)} | {out.recovered} |"
        )
        for note in out.notes:
            notes.append(f"- {out.case} / {out.reader}: {note}")
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome]) -> str:
    ran = [out for out in outcomes if out.skipped is None]
    corrupt = sum(out.corrupt for out in ran)
    slow = [f"{o.case}/{o.reader}" for o in ran if not o.within_limit]
    stuck = [f"{o.case}/{o.reader}" for o in ran if not o.recovered_ok]
    return (
        f"{len(ran)} runs: {corrupt} corrupt bytes; reads over --timeout + 2 s: "
        f"{', '.join(slow) or 'none'}; not recovered: {', '.join(stuck) or 'none'}"
    )


def write_doc(doc: Path, block: str) -> None:
    """Replace the text between the markers of `doc` with `block` (markers appended if absent)."""
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
    else:
        head, tail = text.rstrip("\n") + "\n\n", "\n"
    doc.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")
