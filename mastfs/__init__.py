"""mastfs: a MAST archive query mounted as a read-only FUSE filesystem.

For notebooks (`mastfs/notebook.py`): `mastfs.mounted(program=...)`, a context manager giving
the mount point, and `mastfs.selection_table(program=...)`, a query's selection as an astropy
Table. Without FUSE, `mast://` URLs read through fsspec (`mastfs/fsspec_fs.py`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "mounted", "selection_table"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not by `import mastfs` (every command and module does that).
    if name in ("mounted", "selection_table"):
        return getattr(importlib.import_module("mastfs.notebook"), name)
    raise AttributeError(f"module 'mastfs' has no attribute {name!r}")
