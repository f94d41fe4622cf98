"""`references/` through real mounts of program 2734 (`--references`), with real tools.

What the products' primary headers name is read here with astropy from the simulator's own
bytes; what crossed the network, and whether a request to the CRDS host carried a token, from
the simulator's statistics (`crds:{observatory}/{name}` keys).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import reads
from tests.support.mounting import Mount, cleanup_stale_mounts, mounted, run_cli
from tests.support.sim import AUTHORIZED_TOKEN, MiB, Sim

pytestmark = pytest.mark.mount

TIMEOUT = "10"
# Requests to the CRDS host that carried a MAST token while the module's mount came up.
AT_MOUNT: dict[str, int] = {}


@pytest.fixture(scope="module")
def crds_url(sim_control: Any) -> str:
    return str(sim_control.urls()["crds_url"])


@pytest.fixture(scope="module")
def m2734(
    tmp_path_factory: pytest.TempPathFactory, sim_url: str, crds_url: str, sim_control: Any
) -> Iterator[Mount]:
    """Mounted with the authorized token: no request to the CRDS host may carry it."""
    cleanup_stale_mounts()
    root = tmp_path_factory.mktemp("refs2734")
    args = ["--program", "2734", "--references", "--crds-server", crds_url, "--timeout", TIMEOUT]
    env = {"MAST_API_TOKEN": AUTHORIZED_TOKEN}
    sim_control.reset_stats()
    with mounted(root / "mnt", args, root / "cache", server=sim_url, env=env) as m:
        AT_MOUNT["tokens"] = tokens_at_crds(sim_control)
        yield m


def rows(m: Mount) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(reads.read_text(m.path / "selection.csv"))))


def named(sim_server: Any, m: Mount) -> dict[str, list[str]]:
    """Product path -> the reference names its primary header has (astropy, simulator bytes)."""
    from astropy.io import fits

    out = {}
    for row in rows(m):
        if not (row["URI"].startswith("mast:") and row["Filename"].endswith(".fits")):
            continue
        f = sim_server.file(row["URI"])
        head = fits.Header.fromfile(io.BytesIO(bytes(f.read(0, min(f.size, 1 << 18)))))
        values = [str(v) for k, v in head.items() if k.startswith("R_")]
        out[row["Path"]] = list(
            dict.fromkeys(v.removeprefix("crds://") for v in values if v.startswith("crds://"))
        )
    return out


def test_references_lists_each_named_file_once(m2734: Mount, sim_server: Any) -> None:
    by_product = named(sim_server, m2734)
    wanted = {name for names in by_product.values() for name in names}
    assert wanted, "the simulator's 2734 headers name references"
    listing = reads.listdir(m2734.path / "references")
    assert sorted(listing) == sorted(wanted)
    # A reference named by several products is one file, with one link.
    counts = {n: sum(n in names for names in by_product.values()) for n in wanted}
    shared = max(wanted, key=lambda n: counts[n])
    assert counts[shared] > 1
    assert reads.stat(m2734.path / "references" / shared).st_nlink == 1
    for path, names in by_product.items():
        if names:
            got = subprocess.run(
                ["getfattr", "--only-values", "-n", "user.mast.references", path],
                cwd=m2734.path, capture_output=True, timeout=30, check=True,
            )  # fmt: skip
            assert got.stdout.decode().split(",") == names, path
            assert reads.getxattr(m2734.path / path, "user.mast.crds_context").endswith(b".pmap")
    ref = m2734.path / "references" / shared
    assert reads.getxattr(ref, "user.mast.category") == b"CALIBRATION"
    assert reads.getxattr(ref, "user.mast.uri") == f"crds:jwst/{shared}".encode()


def test_astropy_reads_references_as_crds_serves_them(
    m2734: Mount, sim: Sim, sim_server: Any
) -> None:
    names = sorted(reads.listdir(m2734.path / "references"))
    sizes = {n: sim_server.crds.reference("jwst", n).size for n in names}
    big = max(names, key=lambda n: sizes[n])
    assert sizes[big] > 8 * MiB
    path = m2734.path / "references" / big
    code = f"from astropy.io import fits; print(fits.getheader({str(path)!r})['SIMPLE'])"
    done = reads.run_reader([sys.executable, "-c", code], path)
    assert done.stdout.strip() == b"True", done.stderr
    # The header, not the file: the first block(s) and what readahead adds.
    assert 0 < sim.sent(f"crds:jwst/{big}") <= 4 * MiB
    small = min(names, key=lambda n: sizes[n])
    path = m2734.path / "references" / small
    assert reads.stat(path).st_size == sizes[small]
    expected = bytes(sim_server.crds.reference("jwst", small).read(0, sizes[small]))
    assert reads.read_bytes(path) == expected
    code = (
        "import sys; from astropy.io import fits\n"
        f"with fits.open({str(path)!r}) as h:\n"
        "    print(len(h), h[0].header['SIMPLE'], [x.data is not None for x in h[1:]])"
    )
    done = reads.run_reader([sys.executable, "-c", code], path)
    assert done.returncode == 0 and b"True" in done.stdout, done.stderr
    # The mount's token went to the archive only: not with the HEADs of its start, not with
    # these reads.
    assert AT_MOUNT["tokens"] == 0
    assert tokens_at_crds(sim) == 0


def tokens_at_crds(sim: Any) -> int:
    """Requests to the CRDS host that carried a MAST token, since the stats were reset."""
    files = sim.http.get("/__sim/stats").json()["files"]
    assert any(uri.startswith("crds:") for uri in files)
    return sum(int(c["tokens_elsewhere"]) for uri, c in files.items() if uri.startswith("crds:"))


def test_views_and_ls_list_the_references(
    m2734: Mount, sim_url: str, crds_url: str, tmp_path: Path
) -> None:
    listing = set(reads.listdir(m2734.path / "references"))
    refs = [r for r in rows(m2734) if r["URI"].startswith("crds:")]
    assert {r["Filename"] for r in refs} == listing
    assert all(r["Path"] == f"references/{r['Filename']}" for r in refs)
    manifest = reads.read_text(m2734.path / "manifest.html")
    assert all(f'href="references/{name}"' in manifest for name in listing)

    base = ["ls", "--program", "2734", "--server", sim_url, "--cache-dir", str(tmp_path / "c")]
    done = run_cli([*base, "--csv", "--references", "--crds-server", crds_url])
    assert done.returncode == 0, done.stderr
    got = [r for r in csv.DictReader(io.StringIO(done.stdout)) if r["URI"].startswith("crds:")]
    assert sorted((r["Filename"], r["Size"], r["Path"]) for r in got) == sorted(
        (r["Filename"], r["Size"], r["Path"]) for r in refs
    )
    # Without --references nothing changes.
    plain = run_cli([*base, "--csv"])
    assert plain.returncode == 0 and "crds:" not in plain.stdout
    assert plain.stdout.splitlines() == [
        line for line in done.stdout.splitlines() if "crds:" not in line
    ]


def test_crds_down_the_mount_comes_up_with_one_warning(
    tmp_path: Path, sim_url: str, crds_url: str, sim: Sim
) -> None:
    sim.faults(crds_unavailable=True)
    args = ["--program", "2734", "--references", "--crds-server", crds_url, "--timeout", "3"]
    with mounted(tmp_path / "mnt", args, tmp_path / "cache", server=sim_url) as m:
        warnings = [line for line in m.result.stderr.splitlines() if "warning:" in line]
        assert len(warnings) == 1 and f"{crds_url} unavailable" in warnings[0], m.result.stderr
        assert "Traceback" not in m.result.stderr
        assert reads.listdir(m.path / "references") == []
        row = min(
            (r for r in rows(m) if r["URI"].startswith("mast:")), key=lambda r: int(r["Size"])
        )
        assert reads.read_bytes(m.path / row["Path"]) == sim.expected(
            row["URI"], 0, int(row["Size"])
        )
        assert f"{crds_url} unavailable" in reads.read_text(m.path / "manifest.html")


def test_an_offline_remount_still_shows_the_references_it_has_read(
    tmp_path: Path, sim_url: str, crds_url: str, sim: Sim, sim_server: Any
) -> None:
    """CRDS down on a remount: a reference read before is listed from the cache's record and
    reads the same bytes from the cache; the others are missing, said in the one warning."""
    args = ["--program", "2734", "--references", "--crds-server", crds_url, "--timeout", "3"]
    cache = tmp_path / "cache"
    with mounted(tmp_path / "mnt", args, cache, server=sim_url) as m:
        names = reads.listdir(m.path / "references")
        assert len(names) > 1
        kept = min(names, key=lambda n: (m.path / "references" / n).stat().st_size)
        before = reads.read_bytes(m.path / "references" / kept)
    sim.faults(crds_unavailable=True)
    with mounted(tmp_path / "mnt", args, cache, server=sim_url) as m:
        warnings = [line for line in m.result.stderr.splitlines() if "warning:" in line]
        assert len(warnings) == 1, m.result.stderr
        assert "1 reference file shown as the cache recorded them" in warnings[0]
        assert f"{crds_url} unavailable" in warnings[0]
        assert reads.listdir(m.path / "references") == [kept]
        assert reads.read_bytes(m.path / "references" / kept) == before
    assert before == sim_server.crds.reference("jwst", kept).read(0, len(before))
