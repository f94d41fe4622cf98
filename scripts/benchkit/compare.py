"""What a goal is, and the kinds of comparison a table row makes.

Each kind reads its figures from the results (bench.json's "results", by key path), so a row
is declared once, as data, in goals.py. A figure that is missing shows as "–"; a row whose
`when` figure is missing is left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .common import GiB, MiB
from .table import Row, gb, ms, secs

Key = tuple[str, ...]  # a path into the results: ("seq", "mastfs_ra1024", "cold_gbps")
Results = Mapping[str, Any]
Label = str | Callable[[Results], str]


def lookup(results: Results, key: Key) -> Any:
    """The value at `key`, or None where any part of the path is missing."""
    value: Any = results
    for part in key:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def error_of(results: Results, key: Key) -> str | None:
    entry = lookup(results, key)
    return entry.get("error") if isinstance(entry, Mapping) else None


@dataclass(frozen=True)
class Goal:
    """A threshold a figure must meet, stated as the table states it: "≥ 0.8×", "< 0.5 s"."""

    op: Literal["≥", "≤", "<"]
    threshold: float
    unit: str  # "×", " %", "× faster", " s", " MB", " MiB", " MiB/s"
    note: str = ""  # what the number alone does not say: " (one block)", ", flat"

    @property
    def text(self) -> str:
        return f"{self.op} {self.threshold:g}{self.unit}{self.note}"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        if self.op == "≥":
            return value >= self.threshold
        if self.op == "≤":
            return value <= self.threshold
        return value < self.threshold


def _goal_text(goal: Goal | None) -> str:
    return goal.text if goal else "–"


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One table row: `label` (text, or made from the results); left out when the figure at
    `when` is missing or the entry at `unless_error` has an error."""

    label: Label
    when: Key | None = None
    unless_error: Key | None = None

    def row(self, results: Results) -> Row | None:
        if self.when is not None and lookup(results, self.when) is None:
            return None
        if self.unless_error is not None and error_of(results, self.unless_error) is not None:
            return None
        label = self.label if isinstance(self.label, str) else self.label(results)
        return self.make(label, results)

    def make(self, label: str, results: Results) -> Row:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Throughput(Comparison):
    """GB/s of mastfs ÷ GB/s of the reference.

    `peer`: the reference's own entry; its error, when it has one, replaces its figure.
    """

    mine: Key
    ref_name: str
    ref: Key
    goal: Goal | None = None
    peer: Key | None = None

    def make(self, label: str, results: Results) -> Row:
        mine = lookup(results, self.mine)
        error = error_of(results, self.peer) if self.peer else None
        if error is not None:
            return Row(
                label, gb(mine), f"{self.ref_name}: {error}", None, goal=_goal_text(self.goal)
            )
        ref = lookup(results, self.ref)
        ratio = mine / ref if mine is not None and ref else None
        met = self.goal.met(ratio) if self.goal else None
        return Row(
            label,
            gb(mine),
            f"{self.ref_name}: {gb(ref)}",
            ratio,
            goal=_goal_text(self.goal),
            met=met,
        )


@dataclass(frozen=True, kw_only=True)
class Faster(Comparison):
    """Seconds of the reference ÷ seconds of mastfs, "× faster"."""

    mine: Key
    ref_name: str
    ref: Key
    goal: Goal | None = None

    def make(self, label: str, results: Results) -> Row:
        mine, ref = lookup(results, self.mine), lookup(results, self.ref)
        ratio = ref / mine if mine and ref else None
        return Row(
            label,
            secs(mine),
            f"{self.ref_name}: {secs(ref)}",
            ratio,
            ratio_text=f"{ratio:.1f}× faster" if ratio is not None else "–",
            goal=_goal_text(self.goal),
            met=self.goal.met(ratio) if self.goal else None,
        )


@dataclass(frozen=True, kw_only=True)
class Latency(Comparison):
    """Milliseconds of the reference ÷ milliseconds of mastfs."""

    mine: Key
    ref_name: str
    ref: Key

    def make(self, label: str, results: Results) -> Row:
        a, b = lookup(results, self.mine), lookup(results, self.ref)
        ratio = b / a if a and b else None
        return Row(
            label,
            ms(a),
            f"{self.ref_name}: {ms(b)}",
            ratio,
            ratio_text=f"{ratio:.2f}× (ref/mastfs)" if ratio is not None else "–",
        )


@dataclass(frozen=True, kw_only=True)
class Timed(Comparison):
    """Seconds of mastfs (the goal applies to them), beside a reference's seconds if any."""

    mine: Key
    ref_name: str | None = None
    ref: Key | None = None
    goal: Goal | None = None

    def make(self, label: str, results: Results) -> Row:
        a = lookup(results, self.mine)
        if self.ref is None:
            return Row(label, secs(a), "–")
        b = lookup(results, self.ref)
        return Row(
            label,
            secs(a),
            f"{self.ref_name}: {secs(b)}",
            b / a if a and b else None,
            goal=_goal_text(self.goal),
            met=self.goal.met(a) if self.goal else None,
        )


@dataclass(frozen=True, kw_only=True)
class TimedPair(Comparison):
    """Two timings of mastfs side by side ("first / second"), no reference."""

    first: Key
    second: Key

    def make(self, label: str, results: Results) -> Row:
        both = f"{secs(lookup(results, self.first))} / {secs(lookup(results, self.second))}"
        return Row(label, both, "–")


@dataclass(frozen=True, kw_only=True)
class FetchedShare(Comparison):
    """Bytes fetched from the archive as a share of the file's size, in %."""

    fetched: Key
    requests: Key
    size: Key
    goal: Goal

    def make(self, label: str, results: Results) -> Row:
        fetched, size = lookup(results, self.fetched), lookup(results, self.size)
        share = fetched / size * 100
        return Row(
            label,
            f"{fetched / MiB:.2f} MiB ({lookup(results, self.requests)} GETs)",
            f"file size: {size / GiB:.2f} GiB",
            None,
            ratio_text=f"{share:.3f} %",
            goal=self.goal.text,
            met=self.goal.met(share),
        )


@dataclass(frozen=True, kw_only=True)
class FetchedPerRead(Comparison):
    """Bytes fetched per read of `read_size` bytes (the goal in MiB)."""

    fetched: Key
    requests: Key
    reads: int
    read_size: int
    goal: Goal

    def make(self, label: str, results: Results) -> Row:
        per = lookup(results, self.fetched) / self.reads
        return Row(
            label,
            f"{per / 1024:.0f} KiB ({lookup(results, self.requests)} GETs)",
            f"the read: {self.read_size // 1024} KiB",
            None,
            ratio_text=f"{per / self.read_size:.1f}×",
            goal=self.goal.text,
            met=self.goal.met(per / MiB),
        )


@dataclass(frozen=True, kw_only=True)
class Overfetch(Comparison):
    """Bytes fetched ÷ bytes read."""

    fetched: Key
    read_mib: int

    def make(self, label: str, results: Results) -> Row:
        fetched = lookup(results, self.fetched)
        over = fetched / (self.read_mib * MiB)
        return Row(
            label,
            f"{fetched / MiB:.0f} MiB",
            f"read: {self.read_mib} MiB",
            None,
            ratio_text=f"{over:.3f}×",
        )


@dataclass(frozen=True, kw_only=True)
class OriginShare(Comparison):
    """MiB the archive sent for mastfs ÷ MiB it sent for the reference (lower is better)."""

    mine: Key
    ref_name: str
    ref: Key
    goal: Goal | None = None

    def make(self, label: str, results: Results) -> Row:
        mine, ref = lookup(results, self.mine), lookup(results, self.ref)
        ratio = mine / ref if mine is not None and ref else None

        def mib(v: float | None) -> str:
            return "–" if v is None else f"{v:.0f} MiB"

        return Row(
            label,
            mib(mine),
            f"{self.ref_name}: {mib(ref)}",
            ratio,
            goal=_goal_text(self.goal),
            met=self.goal.met(ratio) if self.goal else None,
        )


@dataclass(frozen=True, kw_only=True)
class MibRate(Comparison):
    """MiB/s of mastfs (the goal applies to it), beside a reference's MiB/s."""

    mine: Key
    ref_name: str
    ref: Key
    goal: Goal

    def make(self, label: str, results: Results) -> Row:
        mine, ref = lookup(results, self.mine), lookup(results, self.ref)
        return Row(
            label,
            f"{mine:.0f} MiB/s",
            f"{self.ref_name}: {ref or 0:.0f} MiB/s",
            None,
            ratio_text=f"{mine / ref:.2f}×" if ref else "–",
            goal=self.goal.text,
            met=self.goal.met(mine),
        )


@dataclass(frozen=True, kw_only=True)
class CpuPerRun(Comparison):
    """Median CPU seconds of the FUSE daemon (and the simulator) over `runs`, against a peer's."""

    runs: Key  # a list of runs, each with "cold_cpu_s": {"daemon", "sim"}
    ref_name: str
    ref: Key

    def row(self, results: Results) -> Row | None:
        runs = [x for x in lookup(results, self.runs) or [] if "cold_cpu_s" in x]
        return super().row(results) if runs else None

    def make(self, label: str, results: Results) -> Row:
        runs = [x["cold_cpu_s"] for x in lookup(results, self.runs) if "cold_cpu_s" in x]
        mine = statistics.median(x["daemon"] for x in runs)
        sim = statistics.median(x["sim"] for x in runs)
        ref = lookup(results, self.ref)
        return Row(
            label,
            f"{mine:.2f} s (simulator: {sim:.2f} s)",
            f"{self.ref_name}: {ref:.2f} s" if ref is not None else f"{self.ref_name}: –",
            None,
            ratio_text=f"{ref / mine:.2f}× (ref/mastfs)" if ref and mine else "–",
        )


@dataclass(frozen=True, kw_only=True)
class PeakRss(Comparison):
    """A daemon's VmHWM in MB (the goal applies to it); with `samples`, the RSS along the way,
    which must also stay flat (within 64 MB)."""

    kb: Key  # {"VmHWM": ..., "VmRSS": ...}
    goal: Goal
    samples: Key | None = None  # [{"at_bytes": ..., "VmRSS": ...}, ...]

    def make(self, label: str, results: Results) -> Row:
        hwm = (lookup(results, self.kb) or {}).get("VmHWM")
        reference, flat = "–", True
        if self.samples is not None:
            samples = lookup(results, self.samples) or []
            trail = ", ".join(
                f"{s['at_bytes'] // GiB} GiB: {s.get('VmRSS', 0) / 1024:.0f}" for s in samples
            )
            reference = f"RSS MB at {trail}" if trail else "–"
            rss = [s.get("VmRSS", 0) for s in samples]
            flat = len(rss) >= 2 and max(rss) - min(rss) < 64 * 1024
        met = self.goal.met(hwm / 1024 if hwm is not None else None) is True and flat
        return Row(
            label,
            f"{hwm / 1024:.0f} MB" if hwm else "–",
            reference,
            None,
            goal=self.goal.text,
            met=met,
        )


@dataclass(frozen=True)
class Group:
    """The rows of one section; when the section did not run or failed, one row says so
    (`missing`), or nothing when `missing` is None and `needs_ok` is False."""

    section: str
    rows: tuple[Comparison, ...]
    missing: str | None = None
    needs_ok: bool = True

    def build(self, results: Results) -> list[Row]:
        entry = results.get(self.section) or {}
        ok = bool(entry) and "error" not in entry
        if self.needs_ok and not ok:
            if self.missing is None:
                return []
            err = error_of(results, (self.section,))
            return [Row(self.missing, f"error: {err}" if err else "not run", "–")]
        return [row for c in self.rows if (row := c.row(results)) is not None]
