"""The link to the archive as range requests measure it: round trip and per-connection rate.

Pure arithmetic on timed requests (no I/O): `fetch.Fetcher` records each range answer here
(the time until its headers, the time its body took) and the readahead policy
(`cache.readahead.shape_for`) sizes its requests and their number from the estimate. A round
trip of 0.2 ms and 1.5 GB/s per connection (loopback) calls for few large requests; 80 ms and
25 MB/s (a transatlantic download) for many smaller ones in flight at once.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

# Answers the estimate remembers: enough to ride over a few odd ones, few enough to follow a
# link that changes.
WINDOW = 16
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
    """The round trip and the per-connection rate of the last `WINDOW` answers.

    The round trip is the smallest of them, as BBR takes it: the link's own delay, without the
    time a server spent producing a file or a busy machine spent scheduling the thread (one
    7-second first answer from a server generating its file must not make loopback look like
    a long link). The rate is their median. Not thread-safe: its owner serialises `record`
    (the fetcher does, under its lock).
    """

    def __init__(self) -> None:
        self._rtts: deque[float] = deque(maxlen=WINDOW)
        self._rates: deque[float] = deque(maxlen=WINDOW)
        self._samples = 0

    def record(self, header_s: float, body_bytes: int, body_s: float) -> None:
        """One answer: `header_s` until its headers, then `body_bytes` in `body_s`."""
        if header_s < 0 or body_s < 0 or body_bytes < 0:
            return
        self._rtts.append(header_s)
        if body_bytes >= MIN_RATE_BODY and body_s > 0:
            self._rates.append(body_bytes / body_s)
        self._samples += 1

    def current(self) -> Link | None:
        """The estimate, or None until a body long enough to tell the rate was received."""
        if not self._rtts or not self._rates:
            return None
        return Link(min(self._rtts), statistics.median(self._rates), self._samples)
