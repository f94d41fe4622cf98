"""The notebook API: `mastfs.mounted` (a real `mastfs mount` child, unmounted however the block
ends) and `mastfs.selection_table` (the selection as an astropy Table, equal to selection.csv)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import mastfs
from tests.support.mounting import is_mounted
from tests.support.reads import read_bytes
from tests.support.views import read_csv

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_mounted_gives_a_path_and_unmounts_even_on_error(
    sim: Any, sim_url: str, tmp_path: Path
) -> None:
    options = {"program": 2734, "group": "X1DINTS", "server": sim_url, "cache_dir": tmp_path}
    with pytest.raises(KeyError, match="raised in the block"):
        with mastfs.mounted(**options) as root:
            assert isinstance(root, Path) and is_mounted(root)
            rows = read_csv(read_bytes(root / "selection.csv"))[1]
            assert rows and {row["Suffix"] for row in rows} == {"_x1dints"}
            row = rows[0]
            assert read_bytes(root / row["Path"]) == sim.expected(row["URI"], 0, int(row["Size"]))
            raise KeyError("raised in the block")
    # The mount point it made is gone with the mount.
    assert not is_mounted(root) and not os.path.exists(root)


def test_mounted_names_a_bad_option_before_mounting(sim_url: str) -> None:
    with pytest.raises(ValueError, match="unknown level '9'"):
        with mastfs.mounted(program=2734, level="9", server=sim_url):
            pass
    with pytest.raises(ValueError, match="'foreground'"):
        with mastfs.mounted(program=2734, foreground=True):
            pass
    with pytest.raises(ValueError, match="no query given"):
        with mastfs.mounted(level="3"):
            pass


def test_selection_table_is_selection_csv(sim: Any, sim_url: str, tmp_path: Path) -> None:
    table = mastfs.selection_table(program=2734, server=sim_url, cache_dir=tmp_path)
    rows = read_csv((GOLDEN / "2734-selection.csv").read_bytes())[1]
    assert table.colnames == [*rows[0], "Readable"]
    assert [[str(v) for v in row][:-1] for row in table] == [list(r.values()) for r in rows]
    assert all(table["Readable"]) and table["Size"].dtype.kind == "i"
    assert table.meta["query"] == "program 2734"
