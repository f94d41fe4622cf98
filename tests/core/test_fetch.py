"""fetch.py against the archive simulator: exact ranges, status mapping, retries, the token.

Everything is real HTTP on loopback. Malformed answers the simulator never gives (a shifted
`Content-Range`, a short or overlong body, `Retry-After`) come from `canned` servers
(tests/support/sim.py), which write each status line, header and body byte as told.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from mastfs import buffers
from mastfs.fetch import (
    BadResponse,
    ContentChanged,
    Fetcher,
    FetchError,
    NotAuthorized,
    NotFound,
    RangeIgnored,
    RangeNotSatisfiable,
    RemoteInfo,
    RetryPolicy,
    TransientError,
)
from tests.support.sim import (
    AUTHORIZED_TOKEN,
    FAST_RETRY,
    UNAUTHORIZED_TOKEN,
    Canned,
    CannedHandler,
    MiB,
    Request,
    Sim,
    canned,
    redirector,
)


class MakeFetcher(Protocol):
    def __call__(
        self,
        url: str,
        token: str | None = None,
        retry: RetryPolicy = FAST_RETRY,
        *,
        timeout: float = 10.0,
    ) -> Fetcher: ...


@pytest.fixture()
def fetcher_for() -> Iterator[MakeFetcher]:
    """Makes Fetchers (fast retries by default) and closes them after the test."""
    made: list[Fetcher] = []

    def make(
        url: str,
        token: str | None = None,
        retry: RetryPolicy = FAST_RETRY,
        *,
        timeout: float = 10.0,
    ) -> Fetcher:
        fetcher = Fetcher(url, token, retry, timeout=timeout)
        made.append(fetcher)
        return fetcher

    try:
        yield make
    finally:
        for fetcher in made:
            fetcher.close()


# -- basics ----------------------------------------------------------------------------------


def test_url_for_quotes_the_uri_but_keeps_its_scheme_and_slashes() -> None:
    fetcher = Fetcher("https://mast.example/", None)
    assert fetcher.url_for("mast:JWST/product/a b&c.fits") == (
        "https://mast.example/api/v0.1/Download/file?uri=mast:JWST/product/a%20b%26c.fits"
    )


def test_repr_does_not_show_the_token() -> None:
    fetcher = Fetcher("http://127.0.0.1:1", "s3cr3t-token-value")
    assert "s3cr3t" not in repr(fetcher)
    assert "s3cr3t" not in str(vars(fetcher).get("server"))
    assert fetcher.has_token


@pytest.mark.parametrize("server", ["ftp://x", "file:///tmp/x", "mast.example", "http://"])
def test_a_server_that_is_not_an_http_url_is_refused(server: str) -> None:
    with pytest.raises(FetchError, match="not an http"):
        Fetcher(server, None)


async def test_head_reports_size_and_etag(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick(min_size=10_000, max_size=4 * MiB)
    info = await fetcher_for(sim.url).head(f.uri)
    assert info.size == f.size
    assert info.etag == f.etag
    assert info.last_modified


async def test_ranges_are_byte_equal_to_the_simulator(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick(min_size=3 * MiB, max_size=64 * MiB, unaligned=True)
    fetcher = fetcher_for(sim.url)
    for start, end in [(0, 1), (0, 2880), (12345, 1_000_000), (f.size - 1, f.size), (0, f.size)]:
        data, info = await fetcher.get_range(f.uri, start, end)
        assert data == sim.expected(f.uri, start, end - start)
        assert info == RemoteInfo(f.size, f.etag, info.last_modified)


async def test_expected_contents_are_checked_before_the_body(
    sim: Sim, fetcher_for: MakeFetcher
) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    fetcher = fetcher_for(sim.url)
    stale = RemoteInfo(f.size, '"an-older-etag"', None)
    with pytest.raises(ContentChanged) as caught:
        await fetcher.get_range(f.uri, 0, 1000, expected=stale)
    assert caught.value.info.etag == f.etag


async def test_range_past_the_end_is_416_with_the_size(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick(min_size=10_000, max_size=4 * MiB)
    with pytest.raises(RangeNotSatisfiable) as caught:
        await fetcher_for(sim.url).get_range(f.uri, f.size, f.size + 10)
    assert caught.value.size == f.size


async def test_unknown_product_is_not_found(sim: Sim, fetcher_for: MakeFetcher) -> None:
    fetcher = fetcher_for(sim.url)
    with pytest.raises(NotFound):
        await fetcher.head("mast:JWST/product/no_such_file.fits")
    with pytest.raises(NotFound):
        await fetcher.get_range("mast:JWST/product/no_such_file.fits", 0, 10)


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("not-a-token", 401)])
async def test_exclusive_access_without_a_valid_token_is_401(
    sim: Sim, fetcher_for: MakeFetcher, token: str | None, status: int
) -> None:
    f = sim.pick("EXCLUSIVE_ACCESS", "6543", max_size=8 * MiB)
    with pytest.raises(NotAuthorized) as caught:
        await fetcher_for(sim.url, token).get_range(f.uri, 0, 100)
    assert caught.value.status == status


async def test_exclusive_access_of_another_program_is_403(
    sim: Sim, fetcher_for: MakeFetcher
) -> None:
    f = sim.pick("EXCLUSIVE_ACCESS", "6543", max_size=8 * MiB)
    with pytest.raises(NotAuthorized) as caught:
        await fetcher_for(sim.url, UNAUTHORIZED_TOKEN).head(f.uri)
    assert caught.value.status == 403
    data, _ = await fetcher_for(sim.url, AUTHORIZED_TOKEN).get_range(f.uri, 0, 100)
    assert data == sim.expected(f.uri, 0, 100)


# -- servers that ignore Range -----------------------------------------------------------------


async def test_a_200_to_a_range_request_is_range_ignored(
    sim: Sim, fetcher_for: MakeFetcher
) -> None:
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB)
    sim.faults(ignore_range=True, scope=f.uri)
    with pytest.raises(RangeIgnored) as caught:
        await fetcher_for(sim.url).get_range(f.uri, 1000, 2000)
    assert caught.value.info.size == f.size
    assert caught.value.info.etag == f.etag


async def test_get_whole_streams_every_byte_once_across_a_reset(
    sim: Sim, fetcher_for: MakeFetcher
) -> None:
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB)
    sim.faults(ignore_range=True, reset_fraction=0.5, max_faults=1, scope=f.uri)
    digest = hashlib.sha256()
    offsets: list[int] = []

    async def sink(offset: int, chunk: bytes, info: RemoteInfo) -> None:
        offsets.append(offset)
        digest.update(chunk)

    fetcher = fetcher_for(sim.url)
    info = await fetcher.get_whole(f.uri, sink)
    assert info.size == f.size
    assert digest.hexdigest() == f.sha256()
    assert offsets == sorted(offsets)
    assert fetcher.counters["retries"] == 1


# -- retries ---------------------------------------------------------------------------------


async def test_server_errors_are_retried(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    sim.faults(error_rate=0.5, error_status=503, scope=f.uri)
    fetcher = fetcher_for(sim.url)
    for start in (0, 4096, 8192, 65536):
        data, _ = await fetcher.get_range(f.uri, start, start + 4096)
        assert data == sim.expected(f.uri, start, 4096)
    assert fetcher.counters["retries"] >= 2


async def test_reset_mid_body_is_retried(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB)
    sim.faults(reset_fraction=0.5, max_faults=2, scope=f.uri)
    fetcher = fetcher_for(sim.url)
    data, _ = await fetcher.get_range(f.uri, 0, 2 * MiB)
    assert data == sim.expected(f.uri, 0, 2 * MiB)
    assert fetcher.counters["retries"] == 2
    assert sim.file_stats(f.uri)["resets"] == 2


async def test_a_stalled_body_times_out_and_is_retried(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    sim.faults(stall_after=1000, stall_seconds=3.0, max_faults=1, scope=f.uri)
    fetcher = fetcher_for(sim.url, timeout=0.3)
    data, _ = await fetcher.get_range(f.uri, 0, 100_000)
    assert data == sim.expected(f.uri, 0, 100_000)
    assert fetcher.counters["retries"] == 1


async def test_persistent_server_errors_become_transient_error(
    sim: Sim, fetcher_for: MakeFetcher
) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    sim.faults(error_rate=1.0, scope=f.uri)
    sim.reset_stats()
    policy = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, deadline=10)
    with pytest.raises(TransientError):
        await fetcher_for(sim.url, None, policy).get_range(f.uri, 0, 100)
    assert sim.gets(f.uri) == 4


async def test_an_unreachable_server_is_a_transient_error(fetcher_for: MakeFetcher) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TransientError):
        await fetcher_for(dead).head("mast:JWST/product/x.fits", retry=False)
    # With retries, a refused connection is tried only `connect_attempts` times.
    fetcher = fetcher_for(dead, None, RetryPolicy(attempts=10, base_delay=0.001))
    with pytest.raises(TransientError, match="3 attempts"):
        await fetcher.get_range("mast:JWST/product/x.fits", 0, 10)
    assert fetcher.counters["attempts"] == 3


# -- where the token goes ------------------------------------------------------------------------


async def test_the_token_goes_to_the_mast_host_only(sim: Sim, fetcher_for: MakeFetcher) -> None:
    f = sim.pick("EXCLUSIVE_ACCESS", "6543", max_size=8 * MiB)
    public = sim.pick(min_size=10_000, max_size=4 * MiB)
    # The "MAST server" redirects every download to the simulator on another origin.
    with redirector(sim.url) as mast:
        fetcher = fetcher_for(mast.url, AUTHORIZED_TOKEN)
        data, _ = await fetcher.get_range(public.uri, 10, 20)
        assert data == sim.expected(public.uri, 10, 10)
        assert mast.seen[-1].headers["authorization"] == f"token {AUTHORIZED_TOKEN}"
        # Across the redirect the token was dropped: the archive refuses the EA file.
        with pytest.raises(NotAuthorized) as caught:
            await fetcher.get_range(f.uri, 0, 100)
        assert caught.value.status == 401
    # Sent to the archive's own origin, the same token is accepted.
    data, _ = await fetcher_for(sim.url, AUTHORIZED_TOKEN).get_range(f.uri, 0, 100)
    assert data == sim.expected(f.uri, 0, 100)


# -- malformed answers (canned servers: the simulator never sends these) --------------------------

URI = "mast:X/y.fits"


def quick(**policy: Any) -> RetryPolicy:
    return RetryPolicy(**{"attempts": 3, "base_delay": 0.001, "max_delay": 0.01, **policy})


def partial(body: bytes, content_range: str, **headers: str) -> Canned:
    headers = {"Content-Range": content_range, "Content-Length": str(len(body)), **headers}
    return Canned(206, headers, body)


def always(answer: Canned) -> CannedHandler:
    return lambda request: answer


def in_turn(*answers: Canned) -> CannedHandler:
    queue = iter(answers)
    return lambda request: next(queue)


@pytest.mark.parametrize(
    ("answer", "end"),
    [
        pytest.param(partial(b"x" * 100, "bytes 1-100/1000"), 100, id="shifted start"),
        pytest.param(partial(b"x" * 100, "bytes 0-99/1000"), 50, id="wrong end"),
        pytest.param(partial(b"x" * 101, "bytes 0-100/1000"), 100, id="longer range"),
        pytest.param(
            Canned(206, {"Content-Range": "bytes 0-99/1000", "Content-Length": "101"}, b"x" * 101),
            100,
            id="longer Content-Length",
        ),
        pytest.param(partial(b"x" * 100, "bytes 0-99/*"), 100, id="unknown total"),
        pytest.param(Canned(206, {}, b"x" * 100), 100, id="no Content-Range"),
    ],
)
async def test_a_mismatched_206_is_a_bad_response(
    fetcher_for: MakeFetcher, answer: Canned, end: int
) -> None:
    with canned(always(answer)) as mast:
        with pytest.raises(BadResponse):
            await fetcher_for(mast.url, "tok", quick()).get_range(URI, 0, end)
        assert mast.calls == 1, "a protocol violation is not retried"


async def test_a_longer_body_is_retried_never_returned(fetcher_for: MakeFetcher) -> None:
    # No Content-Length: the body ends when the connection does, one byte too late.
    longer = Canned(206, {"Content-Range": "bytes 0-99/1000"}, b"x" * 101, close=True)
    with canned(always(longer)) as mast:
        with pytest.raises(TransientError, match="longer than 100 bytes"):
            await fetcher_for(mast.url, "tok", quick()).get_range(URI, 0, 100)
        assert mast.calls == 3


async def test_a_short_body_is_never_returned(fetcher_for: MakeFetcher) -> None:
    # Content-Range claims 100 bytes, the (honest) body has 60: a truncating middlebox.
    with canned(always(partial(b"x" * 60, "bytes 0-99/1000"))) as mast:
        with pytest.raises(BadResponse):
            await fetcher_for(mast.url, "tok", quick()).get_range(URI, 0, 100)
        assert mast.calls == 1


async def test_a_truncated_body_is_retried_until_whole(fetcher_for: MakeFetcher) -> None:
    whole = bytes(range(100))
    headers = {"Content-Range": "bytes 0-99/1000", "Content-Length": "100"}
    rest = {"Content-Range": "bytes 60-99/1000", "Content-Length": "40"}
    # The first answer promises 100 bytes and ends after 60, as a dropped connection does; the
    # retry asks only for the 40 bytes still missing (issue 13: resume, don't restart).
    answers = in_turn(Canned(206, headers, whole[:60], close=True), Canned(206, rest, whole[60:]))
    with canned(answers) as mast:
        data, info = await fetcher_for(mast.url, "tok", quick()).get_range(URI, 0, 100)
        assert data == whole and info.size == 1000 and mast.calls == 2


async def test_a_range_clipped_at_a_new_end_of_file_is_content_changed(
    fetcher_for: MakeFetcher,
) -> None:
    with canned(always(partial(b"x" * 50, "bytes 950-999/1000", ETag='"v2"'))) as mast:
        with pytest.raises(ContentChanged) as caught:
            await fetcher_for(mast.url, "tok", quick()).get_range(URI, 950, 1100)
    assert caught.value.info == RemoteInfo(1000, '"v2"', None)


async def test_retry_after_is_honoured(fetcher_for: MakeFetcher) -> None:
    answers = in_turn(Canned(429, {"Retry-After": "0"}), partial(b"y" * 10, "bytes 0-9/10"))
    with canned(answers) as mast:
        data, _ = await fetcher_for(mast.url, "tok", quick()).get_range(URI, 0, 10)
        assert data == b"y" * 10 and mast.calls == 2


async def test_a_retry_after_beyond_the_deadline_gives_up_at_once(
    fetcher_for: MakeFetcher,
) -> None:
    with canned(always(Canned(503, {"Retry-After": "3600"}))) as mast:
        fetcher = fetcher_for(mast.url, "tok", quick(attempts=10, deadline=30))
        with pytest.raises(TransientError):
            await fetcher.get_range(URI, 0, 10)
        assert mast.calls == 1


async def test_403_keeps_its_status_and_other_4xx_are_not_retried(
    fetcher_for: MakeFetcher,
) -> None:
    with canned(in_turn(Canned(403), Canned(400))) as mast:
        fetcher = fetcher_for(mast.url, "tok", quick())
        with pytest.raises(NotAuthorized) as caught:
            await fetcher.head(URI)
        assert caught.value.status == 403
        with pytest.raises(FetchError) as other:
            await fetcher.head(URI)
        assert not isinstance(other.value, TransientError)
        assert mast.calls == 2


async def test_the_token_is_stripped_on_a_cross_host_redirect_only(
    fetcher_for: MakeFetcher,
) -> None:
    # Two origins on loopback: the "MAST" server and, on another port, a CDN.
    with canned(always(partial(b"z" * 4, "bytes 0-3/4"))) as cdn:

        def mast_answer(request: Request) -> Canned:
            if request.path.startswith("/api"):
                return Canned(302, {"Location": "/moved"})
            return Canned(307, {"Location": f"{cdn.url}/blob"})

        with canned(mast_answer) as mast:
            data, _ = await fetcher_for(mast.url, "tok", quick()).get_range(URI, 0, 4)

    def seen(requests: list[Request]) -> list[tuple[str, str, str | None]]:
        return [(r.method, r.path, r.headers.get("authorization")) for r in requests]

    assert data == b"zzzz"
    assert seen(mast.seen) == [
        ("GET", "/api/v0.1/Download/file", "token tok"),
        ("GET", "/moved", "token tok"),
    ]
    assert seen(cdn.seen) == [("GET", "/blob", None)]


# -- receive buffers ---------------------------------------------------------------------------


async def test_range_bodies_arrive_in_reused_aligned_buffers(
    sim: Sim, fetcher_for: MakeFetcher
) -> None:
    f = sim.pick(min_size=20 * MiB)
    fetcher = fetcher_for(sim.url)
    reused = buffers.POOL.reused
    for start in range(0, 16 * MiB, 8 * MiB):
        pieces, _ = await fetcher.get_range_split(f.uri, start, start + 8 * MiB, MiB)
        assert b"".join(pieces) == sim.expected(f.uri, start, 8 * MiB)
        assert all(not p.readonly and len(p) == MiB and buffers.is_page_aligned(p) for p in pieces)
        del pieces
    assert buffers.POOL.reused > reused
