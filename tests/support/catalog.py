"""The simulator's catalog as an archive client sees it: product rows of a program.

What a mount should show is computed from these rows, never from mastfs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mastfs.sim.catalog import default_catalog

Row = dict[str, Any]


def catalog_rows(proposal: str) -> list[Row]:
    """Every product row (`Mast.Caom.Products`) of every observation of program `proposal`."""
    cat = default_catalog()
    rows: list[Row] = []
    for obs in cat.observations:
        if str(obs["proposal_id"]) == proposal:
            rows.extend(cat.products_for(str(obs["obsid"])))
    return rows


def nested_path(root: Path, row: Row) -> Path:
    """Where the nested layout puts a product row under the mount point `root`."""
    return root / row["obs_collection"] / row["obs_id"] / row["productFilename"]
