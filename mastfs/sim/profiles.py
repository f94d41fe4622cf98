"""Named profiles of the simulator: which knobs (`faults.FaultSettings`) a run starts with.

- **fast** (the default): answers at once, without limits, always with an ETag and a
  Content-Length: what unit tests want.
- **mast**: the real archive as far as the public record shows it (../shared/design/mast-real.md;
  docs/simulator.md gives each value's source): half-second API calls, 80 ms before every answer,
  25 MB/s per connection, product lists that take server time per row and reset their connection
  past MAST's result cap, 401 for every authorization failure, no ETag (Last-Modified only),
  `/url/` products redirected to a second host that ignores Range and sends no Content-Length,
  TESS full-frame-image observations in cone searches.

A profile is data: knob values for `FaultSettings`. `settings(name, time_scale)` scales its
times by `time_scale` (and its bandwidth by the inverse), so a test can run the "mast" profile
at a tenth or a hundredth of the real archive's times; `Retry-After` stays in whole seconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from mastfs.sim.faults import FaultConfigError, FaultSettings

# Knobs in milliseconds or seconds, scaled by `time_scale`; bandwidth is scaled by its inverse.
_TIMES = ("latency_ms", "api_latency_ms", "product_ms_per_row", "stall_seconds")

PROFILES: dict[str, Mapping[str, Any]] = {
    "fast": {},
    "mast": {
        # mast-real.md: about 0.5-0.7 s per small API call (path_lookup, astroquery #2145) ...
        "api_latency_ms": 500.0,
        # ... and the round trip of a user across the internet, on every request.
        "latency_ms": 80.0,
        # One download connection: roughly 5-25 MB/s; the fast end.
        "bandwidth": 25_000_000,
        # Product lists: "600 s is too short for JWST product lists" (#2473) of up to about
        # 300,000 rows (#2507): some milliseconds per row. 1 ms is the low end of that.
        "product_ms_per_row": 1.0,
        # MAST caps a result at about 500,000 rows; above, the connection is reset.
        "products_max_rows": 500_000,
        # Every authorization failure is 401 (#2016, STScI's MastMissions code).
        "auth_401_only": True,
        # ETag: unknown, so assumed absent; generated (`/url/`) files have no Content-Length.
        "no_etag": "mast:",
        "no_length": "/url/",
        # `mast:<MISSION>/url/...` resolve to other hosts (curl --location-trusted scripts);
        # their Range support is unknown, so assumed absent.
        "url_redirect": True,
        "redirect_ignores_range": True,
        # Cone searches find TESS FFIs, whose product lists astroquery will not fetch.
        "tess_ffi": True,
    },
}


def names() -> tuple[str, ...]:
    return tuple(PROFILES)


def settings(name: str, time_scale: float = 1.0, **overrides: Any) -> FaultSettings:
    """The knobs of profile `name`, times scaled by `time_scale`, then `overrides` applied."""
    if name not in PROFILES:
        raise FaultConfigError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise FaultConfigError("time_scale must be a positive number")
    knobs = dict(PROFILES[name])
    for knob in _TIMES:
        if knob in knobs:
            knobs[knob] = knobs[knob] * time_scale
    if knobs.get("bandwidth"):
        knobs["bandwidth"] = int(knobs["bandwidth"] / time_scale)
    knobs.update(overrides)
    unknown = sorted(set(knobs) - {f.name for f in dataclasses.fields(FaultSettings)})
    if unknown:
        raise FaultConfigError(f"unknown knob(s) {', '.join(unknown)}")
    out = FaultSettings(**knobs)
    out.validate()
    return out
