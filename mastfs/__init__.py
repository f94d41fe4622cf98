"""mastfs: a MAST archive query mounted as a read-only FUSE filesystem."""

from __future__ import annotations

__version__ = "0.1.0"
