"""The link to the archive as range requests measure it: round trip and per-connection rate.

Pure arithmetic on timed requests (no I/O): `fetch.Fetcher` records each range answer here
(the time until its headers, the time its body took) and the readahead policy
(`cache.readahead.shape_for`) sizes its requests and their number from the estimate. A round
trip of 0.2 ms and 1.5 GB/s per connection (loopback) calls for few large requests; 80 ms and
25 MB/s (a transatlantic download) for many smaller ones in flight at once.
"""

from __future__ import annotations

from dataclasses import dataclass

# Weight of a new sample in the moving averages: a few requests move the estimate.
ALPHA = 0.25
# Bodies shorter than this say little about the rate (their time is mostly scheduling).
MIN_RATE_BODY = 256 << 10


@dataclass(frozen=True, slots=True)
class Link:
    """An estimate: `rtt` seconds from a request until its answer's headers, `rate` bytes/s of
    one connection's body; `samples` counts the requests behind it (it changes with each)."""

    rtt: float
    rate: float
    samples: int


class LinkEstimate:
    """Exponentially weighted moving averages of the round trip and the per-connection rate.

    Not thread-safe: its owner serialises `record` (the fetcher does, under its lock).
    """

    def __init__(self) -> None:
        self._rtt: float | None = None
        self._rate: float | None = None
        self._samples = 0

    def record(self, header_s: float, body_bytes: int, body_s: float) -> None:
        """One answer: `header_s` until its headers, then `body_bytes` in `body_s`."""
        if header_s < 0 or body_s < 0 or body_bytes < 0:
            return
        self._rtt = header_s if self._rtt is None else _mix(self._rtt, header_s)
        if body_bytes >= MIN_RATE_BODY and body_s > 0:
            rate = body_bytes / body_s
            self._rate = rate if self._rate is None else _mix(self._rate, rate)
        self._samples += 1

    def current(self) -> Link | None:
        """The estimate, or None until a body long enough to tell the rate was received."""
        if self._rtt is None or self._rate is None:
            return None
        return Link(self._rtt, self._rate, self._samples)


def _mix(old: float, new: float) -> float:
    return old + ALPHA * (new - old)
