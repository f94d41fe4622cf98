"""The base of the sections' typed results, written to bench.json as the fields say.

A result starts empty (every field None) and a section fills it as it measures, so a section
that fails half-way still leaves what it measured. In JSON, fields still None are left out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


def to_json(value: Any) -> Any:
    """Results (and lists, dicts of them) as plain JSON values."""
    if isinstance(value, Result):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


class Result:
    """Mixin of the result dataclasses: `to_json()` in field order."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = to_json(value)
        return out


@dataclass
class CpuSeconds(Result):
    """CPU seconds of a FUSE daemon and of the simulator over a measurement (wall: its length)."""

    wall: float | None = None
    daemon: float = 0.0
    sim: float = 0.0
