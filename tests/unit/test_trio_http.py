"""`trio_http`'s pure parts: the request it writes and the answer heads it accepts."""

from __future__ import annotations

import email.message

import pytest

from mastfs.trio_http import (
    TransportError,
    _content_length,
    _is_chunked,
    _parse_head,
    _request_bytes,
)

ORIGIN = ("http", "127.0.0.1", 8080)


def test_a_request_names_its_host_and_headers() -> None:
    sent = _request_bytes(ORIGIN, "GET", "/a?uri=mast:X/y", {"Range": "bytes=0-9"})
    assert sent == (
        b"GET /a?uri=mast:X/y HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=0-9\r\n\r\n"
    )
    assert b"Host: example.org\r\n" in _request_bytes(("http", "example.org", 80), "GET", "/", {})
    assert b"Host: [::1]:81\r\n" in _request_bytes(("http", "::1", 81), "GET", "/", {})


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/a b", {}),  # a redirect's Location with a space
        ("/a\r\nX-Injected: 1", {}),
        ("/a", {"Authorization": "token abc\r\nX-Injected: 1"}),
        ("/a", {"Bad Name": "x"}),
    ],
)
def test_nothing_that_would_split_the_request_is_sent(target: str, headers: dict[str, str]) -> None:
    with pytest.raises(TransportError):
        _request_bytes(ORIGIN, "GET", target, headers)


def test_heads_are_parsed_as_http_client_reads_them() -> None:
    head = _parse_head(
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9/100\r\nETag: \"x\""
    )
    assert head.status == 206 and head.keep_alive
    assert head.headers.get("content-range") == "bytes 0-9/100" and head.headers["etag"] == '"x"'
    assert not _parse_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive
    assert not _parse_head(b"HTTP/1.0 200 OK").keep_alive
    assert _parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive").keep_alive


@pytest.mark.parametrize(
    "raw",
    [b"HTTP/2 200 OK", b"ICY 200 OK", b"HTTP/1.1 2x0 OK", b"HTTP/1.1 200 OK\r\nno colon here",
     b"HTTP/1.1 200 OK\r\nBad Name: x", b"HTTP/1.1 200 OK\r\n folded: x"],
)
def test_broken_heads_are_refused(raw: bytes) -> None:
    with pytest.raises(TransportError):
        _parse_head(raw)


def headers(raw: bytes) -> email.message.Message:
    return _parse_head(b"HTTP/1.1 200 OK\r\n" + raw).headers


def test_framing() -> None:
    assert _content_length(headers(b"Content-Length: 12")) == 12
    # Two different lengths, or one beside a transfer coding, frame nothing.
    assert _content_length(headers(b"Content-Length: 1\r\nContent-Length: 2")) is None
    assert _content_length(headers(b"Content-Length: 1\r\nTransfer-Encoding: chunked")) is None
    assert _content_length(headers(b"Content-Length: -1")) is None
    assert _is_chunked(headers(b"Transfer-Encoding: gzip, chunked"))
    assert not _is_chunked(headers(b"Content-Length: 3"))
