"""Lying download answers: bodies shorter or longer than promised, coded bodies, wrong lengths.

The simulator's lying knobs (docs/simulator.md, "Faults") make the archive itself lie; the
Fetcher must never return a byte of such an answer, through each of its paths: ranges
(`get_range_split`), whole files for servers that ignore `Range` (`get_whole`) and `HEAD`.
Counts come from the simulator's stats. What the simulator cannot say (bytes smuggled after an
answer, framing headers that contradict each other) comes from canned loopback servers.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mastfs.fetch import (
    BadResponse,
    ContentChanged,
    Fetcher,
    RemoteInfo,
    RetryPolicy,
    TransientError,
)
from tests.support.sim import Canned, MiB, Sim, canned

# Few, quick retries: a lie that never stops costs `attempts` requests, counted below.
ATTEMPTS = 4
RETRY = RetryPolicy(attempts=ATTEMPTS, base_delay=0.001, max_delay=0.01, deadline=20.0)


@pytest.fixture()
def fetcher(sim: Sim) -> Iterator[Fetcher]:
    made = Fetcher(sim.url, None, RETRY, timeout=10.0)
    try:
        yield made
    finally:
        made.close()


def small_file(sim: Sim) -> Any:
    return sim.pick(min_size=MiB, max_size=4 * MiB, unaligned=True)


def faults_injected(sim: Sim) -> int:
    return int(sim.http.get("/__sim/faults").json()["faults_injected"])


# -- the knobs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs",
    [
        {"short_body": 0},
        {"long_body": -1},
        {"framing": "sideways"},
        {"content_encoding": "br"},
        {"wrong_length": 1.5},
        {"encoded_length": 1},
    ],
)
def test_bad_lying_knobs_are_refused_and_change_nothing(sim: Sim, knobs: dict[str, Any]) -> None:
    answer = sim.http.post("/__sim/faults", json=knobs)
    assert answer.status_code == 400, answer.text
    assert next(iter(knobs)) in answer.json()["msg"]
    settings = sim.http.get("/__sim/faults").json()
    assert settings["short_body"] is None and settings["long_body"] is None
    assert settings["framing"] == "length" and settings["content_encoding"] == ""
    assert settings["encoded_length"] is True and settings["wrong_length"] == 0
    assert not sim.server.faults.active


# -- range requests (206) ----------------------------------------------------------------------


LIES_RETRIED = [
    pytest.param({"short_body": 100}, id="short, Content-Length"),
    pytest.param({"short_body": 100, "framing": "chunked"}, id="short, chunked"),
    pytest.param({"short_body": 100, "framing": "close"}, id="short, until close"),
    pytest.param({"long_body": 100, "framing": "chunked"}, id="long, chunked"),
    pytest.param({"long_body": 1, "framing": "close"}, id="long, until close"),
    pytest.param({"wrong_length": 100}, id="Content-Length above the body"),
]


@pytest.mark.parametrize("knobs", LIES_RETRIED)
async def test_a_range_body_of_the_wrong_length_is_retried_never_returned(
    sim: Sim, fetcher: Fetcher, knobs: dict[str, Any]
) -> None:
    f = small_file(sim)
    if "wrong_length" in knobs:
        # The 206's Content-Length no longer matches its Content-Range: not even retried.
        sim.faults(scope=f.uri, **knobs)
        with pytest.raises(BadResponse, match="Content-Length"):
            await fetcher.get_range(f.uri, 1000, 101_000)
        assert sim.gets(f.uri) == 1
        return
    sim.faults(scope=f.uri, **knobs)
    with pytest.raises(TransientError):
        await fetcher.get_range(f.uri, 1000, 101_000)
    # The first answer's bytes are kept and that attempt is not a failure (it brought bytes
    # the next one goes on from); each later one brings nothing of the last 100 bytes.
    assert sim.gets(f.uri) == (ATTEMPTS + 1 if "short_body" in knobs else ATTEMPTS)
    # Once the archive tells the truth, the next attempt gets every byte.
    sim.faults(scope=f.uri, max_faults=1, **knobs)
    sim.reset_stats()
    data, info = await fetcher.get_range(f.uri, 1000, 101_000)
    assert data == sim.expected(f.uri, 1000, 100_000)
    assert info.size == f.size
    assert sim.gets(f.uri) == 2 and faults_injected(sim) == 1


async def test_a_chunked_206_of_exactly_the_range_is_accepted(sim: Sim, fetcher: Fetcher) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, framing="chunked")
    pieces, info = await fetcher.get_range_split(f.uri, 0, 200_000, 65536)
    assert b"".join(pieces) == sim.expected(f.uri, 0, 200_000)
    assert info.size == f.size and sim.gets(f.uri) == 1
    assert fetcher.counters["retries"] == 0


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"content_encoding": "gzip"}, id="gzip, encoded length"),
        pytest.param({"content_encoding": "gzip", "encoded_length": False}, id="gzip, raw length"),
        pytest.param({"content_encoding": "gzip", "framing": "chunked"}, id="gzip, chunked"),
    ],
)
async def test_a_coded_range_body_is_refused(
    sim: Sim, fetcher: Fetcher, knobs: dict[str, Any]
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, **knobs)
    with pytest.raises(BadResponse, match="Content-Encoding 'gzip' refused"):
        await fetcher.get_range_split(f.uri, 0, 200_000, 65536)
    assert sim.gets(f.uri) == 1, "mastfs asked for identity: a coded answer is not retried"


async def test_bytes_after_a_range_body_are_never_read_as_the_next_answer(
    sim: Sim, fetcher: Fetcher
) -> None:
    f = small_file(sim)
    # Content-Length says 100,000; 64 more bytes follow on the kept-alive connection.
    sim.faults(scope=f.uri, long_body=64)
    for start in (0, 100_000, 200_000):
        data, _ = await fetcher.get_range(f.uri, start, start + 100_000)
        assert data == sim.expected(f.uri, start, 100_000)
    assert sim.gets(f.uri) == 3
    assert fetcher.counters["retries"] == 0, "a polluted connection was used again"


# -- servers that ignore Range (200, the whole body) -------------------------------------------


class Sink:
    """Collects what `get_whole` delivers, checking that it arrives in order."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.infos: list[RemoteInfo] = []

    async def __call__(self, offset: int, chunk: bytes, info: RemoteInfo) -> None:
        assert offset == len(self.data)
        self.data += chunk
        self.infos.append(info)


async def test_a_short_whole_body_is_retried_and_only_true_bytes_are_delivered(
    sim: Sim, fetcher: Fetcher
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, ignore_range=True, short_body=1000)
    sink = Sink()
    with pytest.raises(TransientError):
        await fetcher.get_whole(f.uri, sink)
    assert sim.gets(f.uri) == ATTEMPTS
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size - 1000)
    # One lie only: the retry completes the file, every byte once.
    sim.faults(scope=f.uri, ignore_range=True, short_body=1000, max_faults=1)
    sink = Sink()
    info = await fetcher.get_whole(f.uri, sink)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    assert info.size == f.size and faults_injected(sim) == 1


async def test_a_whole_body_short_of_an_inflated_length_ends_as_changed_contents(
    sim: Sim, fetcher: Fetcher
) -> None:
    f = small_file(sim)
    # Content-Length 1000 bytes above the file: every true byte arrives, then the connection
    # ends; the size the answer claimed is never reached, so it is never confirmed.
    sim.faults(scope=f.uri, ignore_range=True, wrong_length=1000)
    sink = Sink()
    with pytest.raises(TransientError):
        await fetcher.get_whole(f.uri, sink)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    # Lying once: the honest retry's size differs from the first answer's, which the caller
    # (the cache) hears as new contents, dropping what it took from the lie.
    sim.faults(scope=f.uri, ignore_range=True, wrong_length=1000, max_faults=1)
    with pytest.raises(ContentChanged) as caught:
        await fetcher.get_whole(f.uri, Sink())
    assert caught.value.info.size == f.size


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"content_encoding": "gzip"}, id="gzip, encoded length"),
        pytest.param({"content_encoding": "gzip", "encoded_length": False}, id="gzip, raw length"),
    ],
)
async def test_a_coded_whole_body_delivers_nothing(
    sim: Sim, fetcher: Fetcher, knobs: dict[str, Any]
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, ignore_range=True, **knobs)
    sink = Sink()
    with pytest.raises(BadResponse, match="Content-Encoding"):
        await fetcher.get_whole(f.uri, sink)
    assert sink.data == b"" and sim.gets(f.uri) == 1
    # Nor does a range request learn a size from it.
    with pytest.raises(BadResponse, match="Content-Encoding"):
        await fetcher.get_range(f.uri, 0, 1000)


# Bodies without a length: chunked, or ended by the connection (a generated file).
UNFRAMED = [
    pytest.param({"framing": "chunked"}, id="chunked"),
    pytest.param({"framing": "close"}, id="until close"),
]


@pytest.mark.parametrize("knobs", UNFRAMED)
async def test_a_whole_body_without_a_length_needs_the_catalogues_size_and_all_of_it(
    sim: Sim, fetcher: Fetcher, knobs: dict[str, Any]
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, ignore_range=True, **knobs)
    # Without a size to check it against, a cut body could pass for a whole one: refused.
    sink = Sink()
    with pytest.raises(BadResponse, match="without Content-Length"):
        await fetcher.get_whole(f.uri, sink)
    assert sink.data == b""
    # With the catalogue's size, every byte.
    sink = Sink()
    info = await fetcher.get_whole(f.uri, sink, size=f.size)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    assert info.size == f.size and info.etag == f.etag
    # A catalogue 10 bytes ahead of the file: every attempt ends short, none is taken whole.
    sink, gets = Sink(), sim.gets(f.uri)
    with pytest.raises(TransientError, match="body stopped"):
        await fetcher.get_whole(f.uri, sink, size=f.size + 10)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    assert sim.gets(f.uri) - gets == ATTEMPTS


async def test_a_head_without_a_length_takes_the_known_size(sim: Sim, fetcher: Fetcher) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, framing="chunked")
    info = await fetcher.head(f.uri, size=f.size)
    assert info.size == f.size and info.etag == f.etag


async def test_a_cut_whole_stream_resumes_where_it_stopped(sim: Sim, fetcher: Fetcher) -> None:
    f = sim.pick(min_size=8 * MiB, max_size=32 * MiB)
    sim.faults(scope=f.uri, reset_fraction=0.5, max_faults=1)
    sink = Sink()
    await fetcher.get_whole(f.uri, sink)
    assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    # The second request asked for the rest only, and got it as a 206 (starting over would
    # have cost half the file again; the server's socket buffers may hold a little more).
    stats = sim.file_stats(f.uri)
    assert stats["status"] == {"200": 1, "206": 1}
    assert stats["bytes"] < f.size * 1.2


async def test_bytes_after_a_whole_body_are_never_read_as_the_next_answer(
    sim: Sim, fetcher: Fetcher
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, ignore_range=True, long_body=64)
    for _ in range(3):
        sink = Sink()
        await fetcher.get_whole(f.uri, sink)
        assert bytes(sink.data) == sim.expected(f.uri, 0, f.size)
    assert fetcher.counters["retries"] == 0 and sim.gets(f.uri) == 3


# -- HEAD ----------------------------------------------------------------------------------------


async def test_a_coded_head_is_refused(sim: Sim, fetcher: Fetcher) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, content_encoding="gzip")
    with pytest.raises(BadResponse, match="Content-Encoding"):
        await fetcher.head(f.uri)
    sim.clear_faults()
    # A HEAD has no body to cut: body lies leave it alone, and are not used up by it.
    sim.faults(scope=f.uri, short_body=10, max_faults=1)
    info = await fetcher.head(f.uri)
    assert info.size == f.size and faults_injected(sim) == 0


async def test_a_head_without_a_length_or_a_known_size_is_refused(
    sim: Sim, fetcher: Fetcher
) -> None:
    f = small_file(sim)
    sim.faults(scope=f.uri, framing="chunked")
    with pytest.raises(BadResponse, match="without Content-Length"):
        await fetcher.head(f.uri)


# -- framing headers the simulator never sends (canned servers) ---------------------------------

URI = "mast:X/y.fits"
BODY = bytes(range(100))


def ranged(**headers: str) -> Canned:
    return Canned(206, {"Content-Range": "bytes 0-99/1000", **headers}, BODY, close=True)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(
            ranged(**{"Content-Length": "100", "Content-Encoding": "GZIP"}),
            "Content-Encoding",
            id="coding in capitals",
        ),
        pytest.param(
            ranged(**{"Content-Length": "100", "Content-Encoding": "identity, br"}),
            "Content-Encoding",
            id="a list of codings",
        ),
        pytest.param(
            ranged(**{"Transfer-Encoding": "gzip, chunked"}),
            "Transfer-Encoding",
            id="coded transfer",
        ),
        pytest.param(
            ranged(**{"Transfer-Encoding": "chunked", "Content-Length": "100"}),
            "both",
            id="chunked and a length",
        ),
    ],
)
async def test_framing_that_is_not_plain_bytes_is_refused(answer: Canned, message: str) -> None:
    with canned(lambda request: answer) as server:
        fetcher = Fetcher(server.url, None, RETRY)
        try:
            with pytest.raises(BadResponse, match=message):
                await fetcher.get_range(URI, 0, 100)
            with pytest.raises(BadResponse, match=message):
                await fetcher.head(URI)
        finally:
            fetcher.close()


async def test_identity_coding_said_aloud_is_accepted() -> None:
    answer = Canned(
        206,
        {
            "Content-Range": "bytes 0-99/1000",
            "Content-Length": "100",
            "Content-Encoding": "identity",
        },
        BODY,
    )
    with canned(lambda request: answer) as server:
        fetcher = Fetcher(server.url, None, RETRY)
        try:
            data, _ = await fetcher.get_range(URI, 0, 100)
        finally:
            fetcher.close()
    assert data == BODY


class Smuggler:
    """A loopback server that answers one range honestly, then, when told, sends a forged
    answer for the next range on the same kept-alive connection, before any request for it.
    Every later connection gets honest answers. Runs one step at a time, so the test is
    deterministic."""

    def __init__(self, file: bytes) -> None:
        self.file = file
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.answered = threading.Event()
        self.smuggle = threading.Event()
        self.smuggled = threading.Event()
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def answer(self, request: bytes) -> bytes:
        spec = next(
            line.split(b"=", 1)[1]
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"range:")
        )
        first, last = (int(x) for x in spec.split(b"-"))
        return self.forge(first, last, self.file[first : last + 1])

    def forge(self, first: int, last: int, body: bytes) -> bytes:
        head = (
            f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/"
            f"{len(self.file)}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        try:
            self._exchanges(conn)
        except OSError:
            pass  # the client dropped the connection (with the forged answer unread: a reset)

    def _exchanges(self, conn: socket.socket) -> None:
        first = self.connections == 1
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    more = conn.recv(65536)
                    if not more:
                        return
                    buffered += more
                request, _, buffered = buffered.partition(b"\r\n\r\n")
                conn.sendall(self.answer(request))
                if first:
                    first = False
                    self.answered.set()
                    self.smuggle.wait(10)
                    conn.sendall(self.forge(100, 199, b"E" * 100))
                    self.smuggled.set()

    def close(self) -> None:
        self.listener.close()


async def test_an_answer_smuggled_onto_a_kept_alive_connection_is_never_read() -> None:
    file = bytes(i % 251 for i in range(1000))
    server = Smuggler(file)
    fetcher = Fetcher(server.url, "tok", RETRY)
    try:
        assert (await fetcher.get_range(URI, 0, 100))[0] == file[:100]
        assert server.answered.wait(10)
        server.smuggle.set()
        assert server.smuggled.wait(10)
        # The forged answer now waits on the idle connection; the next request must not take it.
        data, _ = await fetcher.get_range(URI, 100, 200)
    finally:
        fetcher.close()
        server.close()
    assert data == file[100:200]
    assert server.connections == 2


async def test_a_206_of_another_total_size_is_changed_contents_before_its_body() -> None:
    answer = Canned(206, {"Content-Range": "bytes 0-99/2000", "Content-Length": "100"}, BODY)
    with canned(lambda request: answer) as server:
        fetcher = Fetcher(server.url, None, RETRY)
        try:
            with pytest.raises(ContentChanged) as caught:
                await fetcher.get_range(URI, 0, 100, expected=RemoteInfo(1000, None, None))
        finally:
            fetcher.close()
    assert caught.value.info.size == 2000 and server.calls == 1
