"""fetch.py against the archive simulator: exact ranges, status mapping, retries, the token.

`httpx.MockTransport` is used only for malformed answers the simulator cannot give (a shifted
`Content-Range`, a short body, `Retry-After`); everything else is real HTTP on loopback.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

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
from tests.fetch_support import (
    AUTHORIZED_TOKEN,
    FAST_RETRY,
    UNAUTHORIZED_TOKEN,
    MiB,
    Sim,
    redirector,
)


def fetcher_for(client: httpx.AsyncClient, url: str, token: str | None = None) -> Fetcher:
    return Fetcher(client, url, token, FAST_RETRY)


# -- basics ----------------------------------------------------------------------------------


def test_url_for_quotes_the_uri_but_keeps_its_scheme_and_slashes() -> None:
    fetcher = Fetcher(httpx.AsyncClient(), "https://mast.example/", None)
    assert fetcher.url_for("mast:JWST/product/a b&c.fits") == (
        "https://mast.example/api/v0.1/Download/file?uri=mast:JWST/product/a%20b%26c.fits"
    )


def test_repr_does_not_show_the_token() -> None:
    fetcher = Fetcher(httpx.AsyncClient(), "http://127.0.0.1:1", "s3cr3t-token-value")
    assert "s3cr3t" not in repr(fetcher)
    assert "s3cr3t" not in str(vars(fetcher).get("server"))
    assert fetcher.has_token


def test_client_with_its_own_authorization_is_refused() -> None:
    with pytest.raises(ValueError, match="Authorization"):
        Fetcher(httpx.AsyncClient(headers={"Authorization": "token x"}), "http://a", "x")


async def test_head_reports_size_and_etag(sim: Sim, client: httpx.AsyncClient) -> None:
    f = sim.pick(min_size=10_000, max_size=4 * MiB)
    info = await fetcher_for(client, sim.url).head(f.uri)
    assert info.size == f.size
    assert info.etag == f.etag
    assert info.last_modified


async def test_ranges_are_byte_equal_to_the_simulator(sim: Sim, client: httpx.AsyncClient) -> None:
    f = sim.pick(min_size=3 * MiB, max_size=64 * MiB, unaligned=True)
    fetcher = fetcher_for(client, sim.url)
    for start, end in [(0, 1), (0, 2880), (12345, 1_000_000), (f.size - 1, f.size), (0, f.size)]:
        data, info = await fetcher.get_range(f.uri, start, end)
        assert data == sim.expected(f.uri, start, end - start)
        assert info == RemoteInfo(f.size, f.etag, info.last_modified)


async def test_expected_contents_are_checked_before_the_body(
    sim: Sim, client: httpx.AsyncClient
) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    fetcher = fetcher_for(client, sim.url)
    stale = RemoteInfo(f.size, '"an-older-etag"', None)
    with pytest.raises(ContentChanged) as caught:
        await fetcher.get_range(f.uri, 0, 1000, expected=stale)
    assert caught.value.info.etag == f.etag


async def test_range_past_the_end_is_416_with_the_size(sim: Sim, client: httpx.AsyncClient) -> None:
    f = sim.pick(min_size=10_000, max_size=4 * MiB)
    with pytest.raises(RangeNotSatisfiable) as caught:
        await fetcher_for(client, sim.url).get_range(f.uri, f.size, f.size + 10)
    assert caught.value.size == f.size


async def test_unknown_product_is_not_found(sim: Sim, client: httpx.AsyncClient) -> None:
    fetcher = fetcher_for(client, sim.url)
    with pytest.raises(NotFound):
        await fetcher.head("mast:JWST/product/no_such_file.fits")
    with pytest.raises(NotFound):
        await fetcher.get_range("mast:JWST/product/no_such_file.fits", 0, 10)


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("not-a-token", 401)])
async def test_exclusive_access_without_a_valid_token_is_401(
    sim: Sim, client: httpx.AsyncClient, token: str | None, status: int
) -> None:
    f = sim.pick("EXCLUSIVE_ACCESS", "6543", max_size=8 * MiB)
    with pytest.raises(NotAuthorized) as caught:
        await fetcher_for(client, sim.url, token).get_range(f.uri, 0, 100)
    assert caught.value.status == status


async def test_exclusive_access_of_another_program_is_403(
    sim: Sim, client: httpx.AsyncClient
) -> None:
    f = sim.pick("EXCLUSIVE_ACCESS", "6543", max_size=8 * MiB)
    with pytest.raises(NotAuthorized) as caught:
        await fetcher_for(client, sim.url, UNAUTHORIZED_TOKEN).head(f.uri)
    assert caught.value.status == 403
    data, _ = await fetcher_for(client, sim.url, AUTHORIZED_TOKEN).get_range(f.uri, 0, 100)
    assert data == sim.expected(f.uri, 0, 100)


# -- servers that ignore Range -----------------------------------------------------------------


async def test_a_200_to_a_range_request_is_range_ignored(
    sim: Sim, client: httpx.AsyncClient
) -> None:
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB)
    sim.faults(ignore_range=True, scope=f.uri)
    with pytest.raises(RangeIgnored) as caught:
        await fetcher_for(client, sim.url).get_range(f.uri, 1000, 2000)
    assert caught.value.info.size == f.size
    assert caught.value.info.etag == f.etag


async def test_get_whole_streams_every_byte_once_across_a_reset(
    sim: Sim, client: httpx.AsyncClient
) -> None:
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB)
    sim.faults(ignore_range=True, reset_fraction=0.5, max_faults=1, scope=f.uri)
    digest = hashlib.sha256()
    offsets: list[int] = []

    async def sink(offset: int, chunk: bytes, info: RemoteInfo) -> None:
        offsets.append(offset)
        digest.update(chunk)

    fetcher = fetcher_for(client, sim.url)
    info = await fetcher.get_whole(f.uri, sink)
    assert info.size == f.size
    assert digest.hexdigest() == f.sha256()
    assert offsets == sorted(offsets)
    assert fetcher.counters["retries"] == 1


# -- retries ---------------------------------------------------------------------------------


async def test_server_errors_are_retried(sim: Sim, client: httpx.AsyncClient) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    sim.faults(error_rate=0.5, error_status=503, scope=f.uri)
    fetcher = fetcher_for(client, sim.url)
    for start in (0, 4096, 8192, 65536):
        data, _ = await fetcher.get_range(f.uri, start, start + 4096)
        assert data == sim.expected(f.uri, start, 4096)
    assert fetcher.counters["retries"] >= 2


async def test_reset_mid_body_is_retried(sim: Sim, client: httpx.AsyncClient) -> None:
    f = sim.pick(min_size=2 * MiB, max_size=16 * MiB)
    sim.faults(reset_fraction=0.5, max_faults=2, scope=f.uri)
    fetcher = fetcher_for(client, sim.url)
    data, _ = await fetcher.get_range(f.uri, 0, 2 * MiB)
    assert data == sim.expected(f.uri, 0, 2 * MiB)
    assert fetcher.counters["retries"] == 2
    assert sim.file_stats(f.uri)["resets"] == 2


async def test_a_stalled_body_times_out_and_is_retried(sim: Sim) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    sim.faults(stall_after=1000, stall_seconds=3.0, max_faults=1, scope=f.uri)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.3), trust_env=False) as quick:
        fetcher = fetcher_for(quick, sim.url)
        data, _ = await fetcher.get_range(f.uri, 0, 100_000)
    assert data == sim.expected(f.uri, 0, 100_000)
    assert fetcher.counters["retries"] == 1


async def test_persistent_server_errors_become_transient_error(
    sim: Sim, client: httpx.AsyncClient
) -> None:
    f = sim.pick(min_size=MiB, max_size=8 * MiB)
    sim.faults(error_rate=1.0, scope=f.uri)
    sim.reset_stats()
    policy = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, deadline=10)
    with pytest.raises(TransientError):
        await Fetcher(client, sim.url, None, policy).get_range(f.uri, 0, 100)
    assert sim.gets(f.uri) == 4


async def test_an_unreachable_server_is_a_transient_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TransientError):
        await fetcher_for(client, dead).head("mast:JWST/product/x.fits", retry=False)
    # With retries, a refused connection is tried only `connect_attempts` times.
    fetcher = Fetcher(client, dead, None, RetryPolicy(attempts=10, base_delay=0.001))
    with pytest.raises(TransientError, match="3 attempts"):
        await fetcher.get_range("mast:JWST/product/x.fits", 0, 10)
    assert fetcher.counters["attempts"] == 3


# -- where the token goes ------------------------------------------------------------------------


async def test_the_token_goes_to_the_mast_host_only(sim: Sim, client: httpx.AsyncClient) -> None:
    f = sim.pick("EXCLUSIVE_ACCESS", "6543", max_size=8 * MiB)
    public = sim.pick(min_size=10_000, max_size=4 * MiB)
    # The "MAST server" redirects every download to the simulator on another origin.
    with redirector(sim.url) as mast:
        fetcher = fetcher_for(
            client, f"http://127.0.0.1:{mast.server_address[1]}", AUTHORIZED_TOKEN
        )
        data, _ = await fetcher.get_range(public.uri, 10, 20)
        assert data == sim.expected(public.uri, 10, 10)
        assert mast.seen[-1]["authorization"] == f"token {AUTHORIZED_TOKEN}"
        # Across the redirect the token was dropped: the archive refuses the EA file.
        with pytest.raises(NotAuthorized) as caught:
            await fetcher.get_range(f.uri, 0, 100)
        assert caught.value.status == 401
    # Sent to the archive's own origin, the same token is accepted.
    data, _ = await fetcher_for(client, sim.url, AUTHORIZED_TOKEN).get_range(f.uri, 0, 100)
    assert data == sim.expected(f.uri, 0, 100)


# -- malformed answers (MockTransport: the simulator never sends these) --------------------------


def mock_fetcher(handler: Callable[[httpx.Request], httpx.Response], **policy: Any) -> Fetcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    retry = RetryPolicy(**{"attempts": 3, "base_delay": 0.001, "max_delay": 0.01, **policy})
    return Fetcher(client, "http://mast.test", "tok", retry)


def partial(body: bytes, content_range: str, **headers: str) -> httpx.Response:
    # A streamed body, as from a real connection (`content=` would arrive already read).
    headers = {"Content-Range": content_range, "Content-Length": str(len(body)), **headers}
    return httpx.Response(206, headers=headers, stream=httpx.ByteStream(body))


@pytest.mark.parametrize(
    "response",
    [
        partial(b"x" * 100, "bytes 1-100/1000"),  # shifted start
        partial(b"x" * 100, "bytes 0-99/1000", **{"Content-Length": "100"}),  # wrong end
        partial(b"x" * 101, "bytes 0-100/1000"),  # longer than asked
        partial(b"x" * 100, "bytes 0-99/*"),  # unknown total
        httpx.Response(206, stream=httpx.ByteStream(b"x" * 100)),  # no Content-Range at all
    ],
)
async def test_a_mismatched_206_is_a_bad_response(response: httpx.Response) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return response

    # Asking for bytes 0-99 except for the "wrong end" case, which asks for 0-49.
    end = 50 if response.headers.get("content-length") == "100" else 100
    with pytest.raises(BadResponse):
        await mock_fetcher(handler).get_range("mast:X/y.fits", 0, end)
    assert calls == 1, "a protocol violation is not retried"


async def test_a_short_body_is_never_returned() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        # Content-Range claims 100 bytes, the (honest) body has 60: a truncating middlebox.
        return partial(b"x" * 60, "bytes 0-99/1000")

    with pytest.raises(BadResponse):
        await mock_fetcher(handler).get_range("mast:X/y.fits", 0, 100)


async def test_a_truncated_body_is_retried_until_whole() -> None:
    calls = 0
    whole = bytes(range(100))

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        # The first answer promises 100 bytes and ends after 60, as a dropped connection does.
        body = whole[:60] if calls == 1 else whole
        headers = {"Content-Range": "bytes 0-99/1000", "Content-Length": "100"}
        return httpx.Response(206, headers=headers, stream=httpx.ByteStream(body))

    data, info = await mock_fetcher(handler).get_range("mast:X/y.fits", 0, 100)
    assert data == whole and info.size == 1000 and calls == 2


async def test_a_range_clipped_at_a_new_end_of_file_is_content_changed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return partial(b"x" * 50, "bytes 950-999/1000", ETag='"v2"')

    with pytest.raises(ContentChanged) as caught:
        await mock_fetcher(handler).get_range("mast:X/y.fits", 950, 1100)
    assert caught.value.info == RemoteInfo(1000, '"v2"', None)


async def test_retry_after_is_honoured() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return partial(b"y" * 10, "bytes 0-9/10")

    data, _ = await mock_fetcher(handler).get_range("mast:X/y.fits", 0, 10)
    assert data == b"y" * 10 and calls == 2


async def test_a_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, headers={"Retry-After": "3600"})

    with pytest.raises(TransientError):
        await mock_fetcher(handler, attempts=10, deadline=30).get_range("mast:X/y.fits", 0, 10)
    assert calls == 1


async def test_403_keeps_its_status_and_other_4xx_are_not_retried() -> None:
    statuses = iter([403, 400])
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(next(statuses))

    fetcher = mock_fetcher(handler)
    with pytest.raises(NotAuthorized) as caught:
        await fetcher.head("mast:X/y.fits")
    assert caught.value.status == 403
    with pytest.raises(FetchError) as other:
        await fetcher.head("mast:X/y.fits")
    assert not isinstance(other.value, TransientError)
    assert calls == 2


async def test_the_token_is_stripped_on_a_cross_host_redirect_only() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url.copy_with(query=None)), request.headers.get("authorization")))
        if request.url.host == "mast.test" and request.url.path.startswith("/api"):
            return httpx.Response(302, headers={"Location": "/moved"})
        if request.url.path == "/moved":
            return httpx.Response(307, headers={"Location": "http://cdn.test/blob"})
        return partial(b"z" * 4, "bytes 0-3/4")

    data, _ = await mock_fetcher(handler).get_range("mast:X/y.fits", 0, 4)
    assert data == b"zzzz"
    assert seen == [
        ("http://mast.test/api/v0.1/Download/file", "token tok"),
        ("http://mast.test/moved", "token tok"),
        ("http://cdn.test/blob", None),
    ]
