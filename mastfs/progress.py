"""The progress line of long work on a terminal: files, bytes, rate, time left. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from mastfs.selection import format_bytes

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """`45s`, `3m 05s`, `2h 10m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    elapsed: float

    @property
    def rate(self) -> float | None:
        """Bytes per second so far (None before there is anything to measure)."""
        if self.elapsed <= 0 or self.bytes_done <= 0:
            return None
        return self.bytes_done / self.elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far."""
        rate = self.rate
        if rate is None:
            return None
        return max(0, self.bytes_total - self.bytes_done) / rate

    def bar(self, width: int = BAR_WIDTH) -> str:
        share = min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 1.0
        full = int(share * width)
        return "[" + "#" * full + "-" * (width - full) + f"] {share:4.0%}"

    def line(self) -> str:
        """`[#####---] 40%  3/12 files  1.2 GB/3.0 GB  45.1 MB/s  ETA 40s`."""
        rate, eta = self.rate, self.eta
        return (
            f"{self.bar()}  {self.files_done}/{self.files_total} files  "
            f"{format_bytes(self.bytes_done)}/{format_bytes(self.bytes_total)}  "
            + (f"{format_bytes(int(rate))}/s" if rate is not None else "-/s")
            + "  ETA "
            + (format_duration(eta) if eta is not None else "-")
        )
