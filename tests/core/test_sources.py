"""`Sources`: which requests go to the site cache tier, and what a tier's answers are worth.

The archive is the session simulator; the tier is a loopback server that forwards to it (as
nginx does) or answers as a broken or stale cache would. The real nginx runs in
tests/mount/test_scaleout.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mastfs.datacache import parse_data_cache
from mastfs.fetch import RetryPolicy, TransientError
from mastfs.sources import Sources
from tests.support.sim import AUTHORIZED_TOKEN, Canned, Request, canned

EXCLUSIVE = "mast:JWST/product/jw06543001001_02101_00001_nrca1_cal.fits"
PUBLIC = "mast:JWST/product/jw06543-o001_20251104t101010_image3_00001_asn.json"
QUICK = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, deadline=10.0)


def forwarding(archive: str, change: Callable[[Canned], Canned] = lambda a: a) -> Any:
    """A tier that asks the archive (without any credential) and passes the answer on;
    `change` sees and may alter it (header names in lower case)."""

    def handler(request: Request) -> Canned:
        headers = {"Range": request.headers["range"]} if "range" in request.headers else {}
        answer = httpx.request(request.method, archive + request.target, headers=headers)
        keep = {"content-range", "etag", "last-modified", "content-type"}
        if request.method == "HEAD":
            keep.add("content-length")  # the body's is added to the others
        out = {k: v for k, v in answer.headers.items() if k in keep}
        return change(Canned(answer.status_code, out, answer.content))

    return handler


@pytest.fixture()
def made() -> Iterator[list[Sources]]:
    sources: list[Sources] = []
    try:
        yield sources
    finally:
        for s in sources:
            s.close()


def sources(
    made: list[Sources], archive: str, data_cache: str | None = None, cloud_url: str | None = None
) -> Sources:
    """Sources with the token, scoped to the exclusive-access product, as a mount makes them."""
    spec = parse_data_cache(data_cache) if data_cache else None
    s = Sources(archive, AUTHORIZED_TOKEN, QUICK, data_cache=spec, cloud_url=cloud_url)
    s.limit_token_to([EXCLUSIVE])
    made.append(s)
    return s


async def test_public_bytes_via_the_tier_without_token_exclusive_direct(
    sim: Any, sim_url: str, made: list[Sources]
) -> None:
    with canned(forwarding(sim_url)) as tier:
        s = sources(made, sim_url, f"{tier.url};DIRECT")
        public, _ = await s.get_range(PUBLIC, 0, 100)
        exclusive, _ = await s.get_range(EXCLUSIVE, 0, 100)
        assert [r.target.partition("uri=")[2] for r in tier.seen] == [PUBLIC]
        assert not any("authorization" in r.headers or "cookie" in r.headers for r in tier.seen)
    assert public == sim.expected(PUBLIC, 0, 100)
    assert exclusive == sim.expected(EXCLUSIVE, 0, 100)
    # The archive sent the exclusive product's bytes, and only a HEAD (the check) of the other.
    assert sim.file_stats(PUBLIC)["methods"] == {"GET": 1, "HEAD": 1}  # the tier's GET, our HEAD
    assert sim.file_stats(EXCLUSIVE)["methods"] == {"GET": 1}
    assert s.counters["tier_bytes"] == 100


async def test_a_stale_tier_is_bypassed_for_the_product(
    sim: Any, sim_url: str, made: list[Sources]
) -> None:
    def stale(answer: Canned) -> Canned:
        return Canned(answer.status, {**answer.headers, "etag": '"an-old-version"'}, answer.body)

    with canned(forwarding(sim_url, stale)) as tier:
        s = sources(made, sim_url, f"{tier.url};DIRECT")
        first, info = await s.get_range(PUBLIC, 0, 100)
        second, _ = await s.get_range(PUBLIC, 100, 200, expected=info)
        assert tier.calls == 1  # not asked again for this product
    assert info.etag != '"an-old-version"'
    assert first + second == sim.expected(PUBLIC, 0, 200)
    assert s.counters["tier_stale"] == 1


@pytest.mark.parametrize(
    "broken",
    [
        lambda a: Canned(200, {}, b"x" * 5000),  # ranges ignored
        lambda a: Canned(503, {}, b""),
        lambda a: Canned(206, {**a.headers, "content-range": "bytes 1-100/5000"}, a.body),
        lambda a: Canned(a.status, {**a.headers, "content-length": "100"}, a.body[:50], True),
    ],
)
async def test_a_broken_tier_is_left_for_the_next_choice(
    sim: Any, sim_url: str, made: list[Sources], broken: Callable[[Canned], Canned]
) -> None:
    with canned(forwarding(sim_url, broken)) as bad, canned(forwarding(sim_url)) as good:
        s = sources(made, sim_url, f"{bad.url};{good.url}")
        data, _ = await s.get_range(PUBLIC, 0, 100)
        more, _ = await s.get_range(PUBLIC, 100, 200)
        assert bad.calls >= 1 and len(good.seen) == 2  # the bad one is not asked again
    assert data + more == sim.expected(PUBLIC, 0, 200)
    assert s.counters["tier_failovers"] == 1


async def test_without_direct_a_dead_tier_fails_the_read(
    sim: Any, sim_url: str, made: list[Sources]
) -> None:
    with canned(lambda r: Canned(503, {}, b"")) as dead:
        s = sources(made, sim_url, dead.url)
        with pytest.raises(TransientError):
            await s.get_range(PUBLIC, 0, 100)
    assert sim.gets(PUBLIC) == 0


# -- the cloud copy (the simulator's bucket and path_lookup) -------------------------------------

IN_CLOUD = "mast:JWST/product/jw02734002001_03101_00001-seg005_nis_x1dints.fits"
NOT_IN_CLOUD = "mast:JWST/product/jw02734001001_02101_00001-seg004_nis_rate_thumb.png"


async def test_cloud_source_reads_public_products_from_the_bucket_anonymously(
    sim: Any, sim_url: str, made: list[Sources]
) -> None:
    with canned(forwarding(sim_url)) as bucket:
        s = sources(made, sim_url, cloud_url=f"{bucket.url}/stpubdata")
        info = await s.head(IN_CLOUD)
        data, _ = await s.get_range(IN_CLOUD, 1000, 3000, expected=info)
        missing, _ = await s.get_range(NOT_IN_CLOUD, 0, 100)
        exclusive, _ = await s.get_range(EXCLUSIVE, 0, 100)
        asked = [r.path for r in bucket.seen]
        assert not any("authorization" in r.headers or "cookie" in r.headers for r in bucket.seen)
    assert data == sim.expected(IN_CLOUD, 1000, 2000)
    assert missing == sim.expected(NOT_IN_CLOUD, 0, 100)
    assert exclusive == sim.expected(EXCLUSIVE, 0, 100)
    # The key astroquery would use; the bucket asked for nothing else but the missing one.
    assert asked == [
        "/stpubdata/jwst/public/jw02734/jw02734002001/" + IN_CLOUD.rpartition("/")[2],
        "/stpubdata/jwst/public/jw02734/jw02734002001/" + IN_CLOUD.rpartition("/")[2],
        "/stpubdata/jwst/public/jw02734/jw02734001001/" + NOT_IN_CLOUD.rpartition("/")[2],
    ]
    # The archive sent nothing of the product the bucket has, and was asked its path once.
    assert sim.file_stats(IN_CLOUD)["requests"] == 0
    assert sim.gets(NOT_IN_CLOUD) == 1 and sim.gets(EXCLUSIVE) == 1
    assert s.counters["cloud_bytes"] == 2000 and s.counters["cloud_missing"] == 1
    stats = httpx.get(f"{sim_url}/__sim/stats").json()
    assert stats["endpoints"]["path_lookup"] == 2  # not for the exclusive-access product
