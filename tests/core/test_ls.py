"""`mastfs ls`: a query's selection without mounting, as the overlay's preview shows it.

Run as a user runs it (`python -m mastfs ls ...` in a subprocess) against the in-process
simulator. `--csv` must print exactly the `selection.csv` a mount of the same query and
selection serves, so one real mount is compared with it.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastfs.sim.catalog import AUTHORIZED_TOKEN, default_catalog
from tests.support import reads
from tests.support.catalog import catalog_rows
from tests.support.mounting import MASTFS, Mount, cleanup_stale_mounts, mounted, run_cli
from tests.support.views import read_csv

MRP = "Minimum Recommended Products"
SEG1 = "jw02734001001_02101_00001-seg001_nis"


def ls(
    sim_url: str, cache: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`mastfs ls --server SIM ... --cache-dir CACHE`, bytes as written (CRLF kept)."""
    return subprocess.run(
        [*MASTFS, "ls", "--server", sim_url, "--cache-dir", str(cache), *args],
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def parse_table(text: str) -> tuple[dict[str, list[list[str]]], list[str], str]:
    """({dataset: [cells of each file row]}, dataset headers in order, the summary line)."""
    lines = text.rstrip("\n").split("\n")
    *table, summary = lines
    groups: dict[str, list[list[str]]] = {}
    order: list[str] = []
    current = ""
    for line in table:
        if line.startswith("  "):
            # name, level, suffix, instrument, filters, size (number and unit), access...
            groups[current].append(line.split())
        else:
            m = re.fullmatch(
                r"(\S+) \((\d+)\)\s+Product Level\s+Suffix\s+Instrument\s+"
                r"Filter / Grating\s+Size\s+Access",
                line,
            )
            assert m, line
            current = m.group(1)
            order.append(current)
            groups[current] = []
            expected_count = int(m.group(2))
            assert current and expected_count > 0
    return groups, order, summary


def expected_by_dataset(proposal: str, keep: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in catalog_rows(proposal):
        if keep(r):
            out.setdefault(str(r["obs_id"]), set()).add(str(r["productFilename"]))
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ls-cache")


def test_table_grouped_by_dataset(sim_url: str, cache: Path) -> None:
    done = ls(sim_url, cache, "--program", "2734")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert "\033[" not in text  # no colour when stdout is not a terminal
    groups, order, summary = parse_table(text)
    want = expected_by_dataset(
        "2734", lambda r: not r["productSubGroupDescription"].startswith("GS-")
    )
    assert order == sorted(want)
    assert {d: {cells[0] for cells in rows} for d, rows in groups.items()} == want
    for dataset, rows in groups.items():
        names = [cells[0] for cells in rows]
        assert names == sorted(names)
        assert f"{dataset} ({len(rows)})" in text
    cells = {c[0]: c for c in groups[SEG1]}
    size = default_catalog().file(f"mast:JWST/product/{SEG1}_cal.fits").size  # type: ignore[union-attr]
    assert cells[f"{SEG1}_cal.fits"] == [
        f"{SEG1}_cal.fits",
        "2b",
        "_cal",
        "NIRISS",
        "CLEAR;GR700XD",
        f"{size / 1e6:.1f}",
        "MB",
        "PUBLIC",
    ]
    assert cells[f"{SEG1}_uncal.fits"][1:3] == ["1b", "_uncal"]
    assert cells[f"{SEG1}_rateints.fits"][1:3] == ["2a", "_rateints"]
    assert cells[f"{SEG1}_rate_thumb.png"][1:3] == ["2a", "_thumb"]
    assert re.fullmatch(r"87 of 99 files selected \(\d+ GB of \d+ GB\)", summary)
    # Progress goes to stderr, never into the table.
    assert b"product rows" in done.stderr


def test_recommended_table(sim_url: str, cache: Path) -> None:
    done = ls(sim_url, cache, "--program", "2734", "--recommended")
    assert done.returncode == 0, done.stderr
    groups, _, summary = parse_table(done.stdout.decode())
    want = expected_by_dataset("2734", lambda r: r["productGroupDescription"] == MRP)
    assert {d: {c[0] for c in rows} for d, rows in groups.items()} == want
    n = len({f for files in want.values() for f in files})
    assert summary.startswith(f"{n} of 99 files selected (")


def test_exclusive_access_rows_are_marked(sim_url: str, cache: Path) -> None:
    anonymous = ls(sim_url, cache, "--program", "6543")
    assert anonymous.returncode == 0, anonymous.stderr
    groups, _, summary = parse_table(anonymous.stdout.decode())
    rows = [c for files in groups.values() for c in files]
    locked = [c for c in rows if c[-2:] == ["EXCLUSIVE_ACCESS", "(locked)"]]
    public = [c for c in rows if c[-1] == "PUBLIC"]
    assert locked and public and len(locked) + len(public) == len(rows)
    n = len({c[0] for c in locked})
    assert re.fullmatch(
        rf"\d+ of 63 files selected \(.+\); {n} exclusive-access files \([\d.]+ GB\) "
        "are not readable without an authorized MAST token",
        summary,
    )
    ada = ls(sim_url, cache, "--program", "6543", env={"MAST_API_TOKEN": AUTHORIZED_TOKEN})
    assert ada.returncode == 0, ada.stderr
    assert b"(locked)" not in ada.stdout and b"not readable" not in ada.stdout
    assert ada.stdout.count(b"EXCLUSIVE_ACCESS") == len(locked)


# -- --csv equals the mount's selection.csv -----------------------------------------------------

SELECTIONS = [
    [],
    ["--recommended"],
    ["--level", "2a,3", "--extension", "fits", "--exclude-regex", "/SEG00[3-5]/i"],
    ["--guide-stars", "--category", "AUXILIARY,INFO"],
]


@pytest.fixture(scope="module")
def m2734(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> Iterator[Mount]:
    cleanup_stale_mounts()
    root = tmp_path_factory.mktemp("ls2734")
    with mounted(root / "mnt", ["--program", "2734"], root / "cache", server=sim_url) as m:
        yield m


@pytest.mark.mount
def test_csv_equals_the_mounted_selection_csv(m2734: Mount, sim_url: str, cache: Path) -> None:
    seen = set()
    try:
        for options in SELECTIONS:
            done = ls(sim_url, cache, "--program", "2734", "--csv", *options)
            assert done.returncode == 0, done.stderr
            if options:
                chosen = run_cli(["select", str(m2734.path), *options], timeout=60)
            else:
                chosen = run_cli(["select", str(m2734.path), "--all"], timeout=60)
            assert chosen.returncode == 0, chosen.stderr
            mounted_csv = reads.read_bytes(m2734.path / "selection.csv")
            assert done.stdout == mounted_csv, options
            first, rows = read_csv(done.stdout)
            assert first.startswith(
                "Dataset,Filename,Product Level,Suffix,Instrument,Filter / Grating,"
            )
            assert rows
            seen.add(done.stdout)
            # The summary goes to stderr with --csv, and equals the mount's.
            summary = reads.getxattr(m2734.path, "user.mastfs.summary").decode()
            assert done.stderr.decode().splitlines()[-1] == summary
        assert len(seen) == len(SELECTIONS)
    finally:
        run_cli(["select", str(m2734.path), "--all"], timeout=60)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--program", "2734", "--level", "9x"], 2, "unknown level '9x'; valid levels: 1, 1b, "),
        (["--program", "2734", "--category", "FOO"], 2, "unknown category 'FOO'; valid "),
        (["--program", "2734", "--regex", "/(unclosed/"], 2, "invalid regex '/(unclosed/'"),
        (["--recommended"], 2, "no query given"),
        (["--program", "424242"], 1, "no observations match program 424242"),
    ],
)
def test_bad_input_is_one_line(
    sim_url: str, cache: Path, args: list[str], code: int, message: str
) -> None:
    done = ls(sim_url, cache, *args)
    assert done.returncode == code
    assert done.stdout == b""
    errors = [
        line for line in done.stderr.decode().splitlines() if line.startswith("mastfs: error:")
    ]
    assert len(errors) == 1 and errors[0].startswith(f"mastfs: error: {message}"), done.stderr
    assert b"Traceback" not in done.stderr


def test_bad_server_and_token_file(cache: Path, tmp_path: Path) -> None:
    done = run_cli(["ls", "--server", "ftp://x", "--program", "2734", "--cache-dir", str(cache)])
    assert done.returncode == 2
    assert done.stderr.strip() == "mastfs: error: invalid server URL 'ftp://x' " + (
        "(expected http(s)://host[:port])"
    )
    missing = tmp_path / "no-token"
    done = run_cli(["ls", "--program", "2734", "--token-file", str(missing)])
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"mastfs: error: cannot read token file {missing}")


def test_typo_in_a_group_is_reported(sim_url: str, cache: Path) -> None:
    done = ls(sim_url, cache, "--program", "2734", "--group", "CALL,X1DINTS")
    assert done.returncode == 0
    assert b"mastfs: warning: group 'CALL' matches no file of program 2734" in done.stderr, (
        done.stderr
    )
    _, _, summary = parse_table(done.stdout.decode())
    assert summary.startswith("12 of 99 files selected")


def test_closed_pipe_is_not_a_traceback(sim_url: str, cache: Path) -> None:
    read_end, write_end = os.pipe()
    # A one-page pipe: the table (about 20 kB) cannot fit, so `ls` is still writing when the
    # reader goes away, as with `mastfs ls ... | head -1`.
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(
        [*MASTFS, "ls", "--server", sim_url, "--cache-dir", str(cache), "--program", "1558"],
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.readline().startswith(b"jw01558")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_target_and_radius_query(sim_url: str, cache: Path) -> None:
    """`--target` is resolved by the archive itself (`Mast.Name.Lookup`), then a cone search."""
    done = ls(sim_url, cache, "--target", "WASP-96", "--radius", "1m", "--csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()[1:]
    datasets = {line.split(",")[0] for line in lines if line}
    expected = {r["obs_id"] for r in catalog_rows("2734") if "_gs-" not in r["productFilename"]}
    assert datasets == expected
    unknown = ls(sim_url, cache, "--target", "NoSuchThing")
    assert unknown.returncode == 1
    assert "could not resolve target name 'NoSuchThing'" in unknown.stderr.decode()
    assert b"Traceback" not in unknown.stderr
