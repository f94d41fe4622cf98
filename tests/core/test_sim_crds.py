"""The simulator's CRDS host over HTTP: routes, ranges, faults, stats, and valid reference files.

Against the session simulator (`sim` fixture): what a client of `crds_url` sees, as
jwst-crds.stsci.edu serves `unchecked_get`, and what the stats say it did.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from astropy.io import fits

from mastfs.fitsheaders import HeaderWalk
from mastfs.references import references
from mastfs.sim.cli import _parse_sets
from mastfs.sim.faults import Faults
from tests.support.child import stop_process
from tests.support.sim import Sim

REFS = "/unchecked_get/references/jwst/"
MAPS = "/unchecked_get/mappings/jwst/"
MiB = 1 << 20


@pytest.fixture()
def crds(sim: Sim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.urls()["crds_url"], timeout=30, trust_env=False) as client:
        yield client


def smallest(sim: Sim) -> str:
    files = sim.server.crds
    return min(files.names("jwst"), key=lambda n: (files.reference("jwst", n).size, n))


def uri(name: str) -> str:
    return f"crds:jwst/{name}"


def test_crds_host_is_another_origin(sim: Sim) -> None:
    crds_url = urllib.parse.urlsplit(sim.urls()["crds_url"])
    archive = urllib.parse.urlsplit(sim.url)
    assert crds_url.scheme == "http" and crds_url.port not in (None, archive.port)
    assert crds_url.hostname == "127.0.0.2"
    assert sim.server.crds_url == sim.urls()["crds_url"]


def test_whole_range_and_head(sim: Sim, crds: httpx.Client) -> None:
    name = smallest(sim)
    ref = sim.server.crds.reference("jwst", name)
    whole = crds.get(REFS + name)
    assert whole.status_code == 200 and whole.content == bytes(ref.read(0, ref.size))
    headers = whole.headers
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Accept-Ranges"] == "bytes" and int(headers["Content-Length"]) == ref.size
    assert headers["ETag"].startswith('"') and headers["Last-Modified"].endswith("GMT")
    part = crds.get(REFS + name, headers={"Range": "bytes=2880-5759"})
    assert part.status_code == 206 and part.content == bytes(ref.read(2880, 2880))
    assert part.headers["Content-Range"] == f"bytes 2880-5759/{ref.size}"
    tail = crds.get(REFS + name, headers={"Range": f"bytes={ref.size - 10}-"})
    assert tail.status_code == 206 and tail.content == bytes(ref.read(ref.size - 10, 10))
    past = crds.get(REFS + name, headers={"Range": f"bytes={ref.size}-"})
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{ref.size}"
    head = crds.head(REFS + name)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == ref.size
    assert head.headers["ETag"] == headers["ETag"]
    stats = sim.file_stats(uri(name))
    assert stats["hosts"] == {"crds": 5} and stats["methods"] == {"GET": 4, "HEAD": 1}
    assert sim.gets(uri(name)) == 4 and sim.heads(uri(name)) == 1
    assert sim.sent(uri(name)) == ref.size + 2880 + 10 + len(past.content)
    assert stats["tokens_elsewhere"] == 0


def test_contexts(sim: Sim, crds: httpx.Client) -> None:
    pmap = crds.get(MAPS + "jwst_1241.pmap")
    assert pmap.status_code == 200 and pmap.headers["Content-Type"] == "application/octet-stream"
    assert "'name' : 'jwst_1241.pmap'" in pmap.text and "selector = {" in pmap.text
    assert crds.head(MAPS + "jwst_1225.pmap").status_code == 200
    assert sim.gets(uri("jwst_1241.pmap")) == 1


@pytest.mark.parametrize(
    "path",
    [
        REFS + "jwst_nircam_dark_9999.fits",
        "/unchecked_get/references/hst/jwst_nircam_dark_0001.fits",
        REFS,
        MAPS + "jwst_0001.pmap",
        "/unchecked_get/nothing/jwst/jwst_1241.pmap",
        "/unchecked_get/references/jwst/../../etc/passwd",
        "/unchecked_get/references/jwst/x/jwst_1241.pmap",
        "/",
    ],
)
def test_unknown_names_are_404(sim: Sim, crds: httpx.Client, path: str) -> None:
    assert crds.get(path).status_code == 404
    assert crds.head(path).status_code == 404


def test_names_are_matched_exactly(sim: Sim, crds: httpx.Client) -> None:
    name = smallest(sim)
    for other in (name.upper(), name + "/", name[:-1], urllib.parse.quote(name[:-1]) + "%73"):
        assert crds.head(REFS + other).status_code == 404, other
    assert crds.head(MAPS + name).status_code == 404
    assert crds.head(REFS + "jwst_1241.pmap").status_code == 404
    assert crds.post(REFS + name).status_code == 405


def test_crds_unavailable(sim: Sim, crds: httpx.Client) -> None:
    name = smallest(sim)
    sim.faults(crds_unavailable=True)
    assert crds.get(REFS + name).status_code == 503
    assert crds.head(MAPS + "jwst_1241.pmap").status_code == 503
    assert crds.get("/anything").status_code == 503
    assert sim.file_stats(uri(name))["status"] == {"5xx": 1}
    # The archive is not CRDS.
    assert sim.http.get("/api/v0.1/Download/file", params={"uri": sim.pick().uri},
                        headers={"Range": "bytes=0-9"}).status_code == 206  # fmt: skip
    sim.faults(crds_unavailable=False)
    assert crds.head(REFS + name).status_code == 200


def test_authorization_is_counted(sim: Sim, crds: httpx.Client) -> None:
    name = smallest(sim)
    crds.head(REFS + name)
    crds.head(REFS + name, headers={"Authorization": "token mastsim-authorized-6543"})
    crds.head(REFS + name, headers={"Authorization": "Basic dXNlcjpwdw=="})
    crds.head(REFS + "jwst_nircam_dark_9999.fits", headers={"Authorization": "Bearer x"})
    assert sim.file_stats(uri(name))["tokens_elsewhere"] == 2
    assert sim.file_stats(uri("jwst_nircam_dark_9999.fits"))["tokens_elsewhere"] == 1
    sim.faults(crds_unavailable=True)
    crds.head(REFS + name, headers={"Authorization": "token t"})
    assert sim.file_stats(uri(name))["tokens_elsewhere"] == 3


def test_download_faults_apply(sim: Sim, crds: httpx.Client) -> None:
    name = smallest(sim)
    sim.faults(latency_ms=300, scope="crds:")
    started = time.monotonic()
    assert crds.head(REFS + name).status_code == 200
    assert time.monotonic() - started >= 0.3
    sim.faults(bandwidth=1 << 20, scope="crds:")
    started = time.monotonic()
    body = crds.get(REFS + name, headers={"Range": "bytes=0-262143"})
    assert body.status_code == 206 and len(body.content) == 256 << 10
    assert time.monotonic() - started >= 0.2
    sim.faults(reset_after=1000, scope="crds:")
    with pytest.raises(httpx.TransportError):
        crds.get(REFS + name)
    sim.faults(error_rate=1.0, scope="crds:")
    assert crds.get(REFS + name).status_code == 503


def test_cli_sets_the_knob() -> None:
    faults = Faults()
    faults.update(_parse_sets(["crds_unavailable=true"]))
    assert faults.settings.crds_unavailable is True


def test_cli_prints_the_crds_host() -> None:
    """`mastfs sim --set crds_unavailable=true`: its startup line names the CRDS host, which is
    unavailable."""
    child = subprocess.Popen(
        [sys.executable, "-m", "mastfs.sim", "--port", "0", "--set", "crds_unavailable=true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        url = child.stdout.readline().strip()
        line = child.stderr.readline()
        found = re.search(r"resolver (http://\S+), CRDS (http://[\d.]+:\d+);", line)
        assert url.startswith("http://") and found, line
        crds_url = found.group(2)
        with httpx.Client(timeout=30, trust_env=False) as client:
            assert client.get(crds_url + MAPS + "jwst_1241.pmap").status_code == 503
            assert client.get(url + "/__sim/health").json()["crds_url"] == crds_url
    finally:
        stop_process(child)


def test_catalog_references_are_plausible(sim: Sim) -> None:
    files = sim.server.crds
    names = files.names("jwst")
    assert len(names) > 100
    assert all(re.fullmatch(r"jwst_(nircam|niriss|nirspec|miri|fgs)_[a-z0-9]+_\d{4}\.fits", n)
               for n in names)  # fmt: skip
    sizes = [files.reference("jwst", n).size for n in names]
    assert 0.25 * MiB < min(sizes) and max(sizes) < 40 * MiB
    assert files.mapping_names("jwst") == ["jwst_1225.pmap", "jwst_1241.pmap"]


def test_2734_headers_name_served_references_astropy_opens(sim: Sim, crds: httpx.Client) -> None:
    products = sorted(
        (f for f in sim.server.catalog.files()
         if f.proposal_id == "2734" and f.filename.endswith(".fits")),
        key=lambda f: f.filename,
    )  # fmt: skip
    named: dict[str, set[str]] = {}
    contexts = set()
    for f in products:
        walk = HeaderWalk(f.size)
        while (at := walk.want()) is not None and not walk.hdus:
            walk.feed(at, bytes(f.read(at, 2880)))
        refs = references(walk.hdus[0])
        assert refs.rejected == (), f.filename
        if f.filename.endswith(("_uncal.fits", "_stream.fits")):
            assert refs.files == {} and refs.context is None, f.filename
            continue
        assert refs.files and refs.context is not None, f.filename
        contexts.add(refs.context)
        for keyword, name in refs.files.items():
            named.setdefault(name, set()).add(keyword)
    assert contexts == {"jwst_1241.pmap", "jwst_1225.pmap"}
    # Many products, a handful of references each: one file per detector and subarray.
    assert 15 <= len(named) <= 40
    assert all(len(keywords) == 1 for keywords in named.values())
    for context in contexts:
        assert crds.head(MAPS + context).status_code == 200
    for name in sorted(named):
        head = crds.head(REFS + name)
        assert head.status_code == 200, name
        assert int(head.headers["Content-Length"]) == sim.server.crds.reference("jwst", name).size
    dark = next(n for n in named if "_dark_" in n)
    body = crds.get(REFS + dark).content
    with fits.open(io.BytesIO(body)) as hdul:
        primary = hdul[0].header
        assert primary["TELESCOP"] == "JWST" and primary["INSTRUME"] == "NIRISS"
        assert primary["REFTYPE"] == "DARK" and primary["FILENAME"] == dark
        assert primary["DETECTOR"] == "NIS" and primary["SUBARRAY"] == "SUBSTRIP256"
        for key in ("PEDIGREE", "USEAFTER", "AUTHOR", "DESCRIP"):
            assert primary[key], key
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "DQ"]
        assert hdul["SCI"].data.shape == (256, 2048)
    assert fits.getheader(io.BytesIO(body))["REFTYPE"] == "DARK"
