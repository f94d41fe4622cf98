"""The owner's MAST token goes only with requests that need it (exclusive-access products).

A shared mount fetches public products for other users too: those requests must not carry the
owner's token. A loopback server records the `Authorization` header of each request.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mastfs.fetch import Fetcher, RetryPolicy
from tests.support.sim import Canned, Request, canned

EXCLUSIVE = "mast:JWST/product/jw06543001001_02101_00001_nrca1_cal.fits"
PUBLIC = "mast:JWST/product/jw06543-o001_20251104t101010_image3_00001_asn.json"
QUICK = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, deadline=10.0)


def answer(request: Request) -> Canned:
    return Canned(206, {"Content-Range": "bytes 0-3/4", "Content-Length": "4"}, b"abcd")


@pytest.fixture()
def fetchers() -> Iterator[list[Fetcher]]:
    made: list[Fetcher] = []
    try:
        yield made
    finally:
        for fetcher in made:
            fetcher.close()


def tokens_sent(requests: list[Request]) -> dict[str, str | None]:
    """The Authorization header each product's request carried (by data URI)."""
    out = {}
    for r in requests:
        uri = r.target.partition("uri=")[2]
        out[uri] = r.headers.get("authorization")
    return out


async def test_every_request_carries_the_token_until_scoped(fetchers: list[Fetcher]) -> None:
    with canned(answer) as mast:
        fetcher = Fetcher(mast.url, "tok", QUICK)
        fetchers.append(fetcher)
        await fetcher.get_range(PUBLIC, 0, 4)
        # The access probe, before the products are known, asks with the token.
        await fetcher.get_range(EXCLUSIVE, 0, 4)
    assert tokens_sent(mast.seen) == {PUBLIC: "token tok", EXCLUSIVE: "token tok"}


async def test_scoped_token_goes_only_with_exclusive_access_products(
    fetchers: list[Fetcher],
) -> None:
    with canned(answer) as mast:
        fetcher = Fetcher(mast.url, "tok", QUICK)
        fetchers.append(fetcher)
        fetcher.limit_token_to([EXCLUSIVE])
        await fetcher.get_range(PUBLIC, 0, 4)
        await fetcher.get_range(EXCLUSIVE, 0, 4)
    assert tokens_sent(mast.seen) == {PUBLIC: None, EXCLUSIVE: "token tok"}
