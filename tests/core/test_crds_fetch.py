"""Reference files through `Sources`: `crds:` URIs go to their CRDS server, never with the MAST
token, and a CRDS that lacks a file or is down is a bounded, named answer (`discovery`).

The CRDS server is a loopback server answering as told; the simulator's own CRDS host is used
through real mounts in tests/mount/test_references.py.
"""

from __future__ import annotations

import time

import trio

from mastfs import crds, discovery
from mastfs.fetch import NotFound, RemoteInfo, RetryPolicy
from mastfs.sources import Sources
from tests.support.sim import AUTHORIZED_TOKEN, Canned, Request, canned

NAME = "jwst_niriss_dark_0171.fits"
URI = crds.reference_uri("jwst", NAME)
BODY = bytes(range(256)) * 40
QUICK = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=5.0)


def reference_host(request: Request) -> Canned:
    """Any request path: the archive's download or a CRDS reference (ranges of `BODY`)."""
    if request.path.endswith("/missing_0001.fits"):
        return Canned(404)
    headers = {"ETag": '"r1"', "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        return Canned(200, {**headers, "Content-Length": str(len(BODY))})
    first, _, last = request.headers["range"].removeprefix("bytes=").partition("-")
    lo, hi = int(first), int(last)
    headers["Content-Range"] = f"bytes {lo}-{hi}/{len(BODY)}"
    return Canned(206, headers, BODY[lo : hi + 1])


async def test_references_go_to_crds_without_the_token_even_on_the_archive_origin() -> None:
    with canned(reference_host) as host:
        servers = crds.crds_servers(host.url)
        sources = Sources(host.url, AUTHORIZED_TOKEN, QUICK, crds_servers=servers)
        try:
            info = await sources.head(URI)
            data, _ = await sources.get_range(URI, 100, 300)
            await sources.head("mast:JWST/product/jw02734_x_cal.fits")
        finally:
            sources.close()
    assert info.size == len(BODY) and data == BODY[100:300]
    to_crds = [r for r in host.seen if r.path.startswith("/unchecked_get/")]
    assert [r.path for r in to_crds] == [f"/unchecked_get/references/jwst/{NAME}"] * 2
    assert all("authorization" not in r.headers for r in to_crds)
    # The same origin's archive requests still carry it: only the CRDS fetcher lacks it.
    archive = [r for r in host.seen if not r.path.startswith("/unchecked_get/")]
    assert archive and all(
        r.headers["authorization"] == f"token {AUTHORIZED_TOKEN}" for r in archive
    )
    assert sources.counters["crds_bytes"] == 200


async def nothing(uri: str) -> RemoteInfo | None:
    """A cache that recorded nothing."""
    return None


async def test_a_reference_crds_lacks_is_named_missing() -> None:
    with canned(reference_host) as host:
        servers = crds.crds_servers(host.url)
        sources = Sources(host.url, None, QUICK, crds_servers=servers)
        missing = crds.reference_uri("jwst", "missing_0001.fits")
        try:
            try:
                await sources.head(missing)
                raise AssertionError("a 404 is NotFound")
            except NotFound:
                pass
            files, why, _ = await discovery._ask_crds(
                sources, {URI: {"R_DARK"}, missing: {"R_GAIN"}}, servers, 5.0, 4, nothing
            )
        finally:
            sources.close()
    assert list(files) == [URI] and files[URI].size == len(BODY)
    assert why == {missing: f"not on {host.url}"}


async def test_a_crds_that_is_down_costs_one_timeout_not_one_per_reference() -> None:
    with canned(lambda request: Canned(503)) as host:
        servers = crds.crds_servers(host.url)
        sources = Sources(host.url, None, QUICK, crds_servers=servers)
        wanted = {crds.reference_uri("jwst", f"jwst_nis_dark_{i:04d}.fits"): {"R_DARK"}
                  for i in range(40)}  # fmt: skip
        started = time.monotonic()
        try:
            files, why, _ = await discovery._ask_crds(sources, wanted, servers, 3.0, 4, nothing)
        finally:
            sources.close()
        elapsed = time.monotonic() - started
    assert files == {}
    assert set(why) == set(wanted) and set(why.values()) == {f"{host.url} unavailable"}
    assert elapsed < 6.0
    # Asked about a few references (those under way when the first failed), not about 40.
    assert host.calls <= 4 * QUICK.attempts


async def test_a_crds_that_does_not_answer_is_bounded_by_the_timeout() -> None:
    def silent(request: Request) -> Canned:
        time.sleep(3)
        return Canned(503)

    with canned(silent) as host:
        servers = crds.crds_servers(host.url)
        sources = Sources(host.url, None, QUICK, crds_servers=servers)
        wanted = {crds.reference_uri("jwst", f"jwst_nis_dark_{i:04d}.fits"): {"R_DARK"}
                  for i in range(8)}  # fmt: skip
        try:
            with trio.fail_after(5):
                files, why, _ = await discovery._ask_crds(
                    sources, wanted, servers, 1.0, 4, nothing
                )
        finally:
            sources.close()
    assert files == {} and set(why) == set(wanted)
    assert set(why.values()) == {f"{host.url} did not answer within 1 s"}
