"""Where the token goes when downloads are redirected: the archive's own origin (scheme, host,
port) and nowhere else, over the scheme configured, on every hop of a chain.

The "archive" is a loopback server that speaks TLS and plain HTTP on one port (it tells them
apart by the first byte), with a self-signed certificate made here for `localhost` and
127.0.0.1 and trusted through the Fetcher's `ssl_context`. So a redirect can change exactly one
part of the origin: the scheme (https to http, same host and port), the host (`localhost` to
127.0.0.1, same port), or the port (a second such server).
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mastfs.fetch import Fetcher, RetryPolicy, _origin
from tests.support.sim import Canned, CannedServer, Request

TOKEN = "s3cr3t-token"
URI = "mast:X/y.fits"
BODY = b"zzzz"
RETRY = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, deadline=10.0)


def test_origins_differ_by_scheme_host_or_port_only() -> None:
    assert _origin("https://MAST.example/x") == _origin("https://mast.example:443/y?z")
    assert _origin("http://mast.example/") == _origin("http://mast.example:80/")
    # A downgrade to http on the same host (and even the same port) is another origin.
    assert _origin("https://mast.example/") != _origin("http://mast.example/")
    assert _origin("https://mast.example:8443/") != _origin("http://mast.example:8443/")
    assert _origin("https://mast.example/") != _origin("https://mast.example:8443/")
    assert _origin("https://mast.example/") != _origin("https://cdn.mast.example/")


@dataclass(frozen=True)
class Seen:
    scheme: str
    host: str
    path: str
    authorization: str | None


class DualServer(CannedServer):
    """A canned server answering TLS and plain HTTP on the same port: a redirect for the paths
    in `routes`, the product's bytes for any other. `hops` records each request with the
    scheme it came over."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.local = threading.local()
        self.hops: list[Seen] = []
        self.routes: dict[str, str] = {}
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Canned:
        host = request.headers.get("host", "").rsplit(":", 1)[0]
        authorization = request.headers.get("authorization")
        self.hops.append(Seen(self.local.scheme, host, request.path, authorization))
        target = self.routes.get(request.path)
        if target is not None:
            return Canned(302, {"Location": target})
        return Canned(206, {"Content-Range": "bytes 0-3/4", "Content-Length": "4"}, BODY)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        # A TLS connection starts with a handshake record (0x16); plain HTTP with a method.
        if request.recv(1, socket.MSG_PEEK) == b"\x16":
            request = self.context.wrap_socket(request, server_side=True)
            self.local.scheme = "https"
        else:
            self.local.scheme = "http"
        super().finish_request(request, client_address)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture()
def servers(certificate: tuple[Path, Path]) -> Iterator[tuple[DualServer, DualServer]]:
    """The archive and, on another port, a second server."""
    cert_file, key_file = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    made = []
    try:
        for _ in range(2):
            server = DualServer(context)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
            thread.start()
            made.append((server, thread))
        yield made[0][0], made[1][0]
    finally:
        for server, thread in made:
            server.shutdown()
            server.drop_connections()
            server.server_close()
            thread.join(timeout=5)


def trusting(cert_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert_file))


def chain(archive: DualServer, other: DualServer, name: str) -> list[str]:
    """The redirect chain after the download request, by scenario."""
    port, foreign = archive.port, other.port
    return {
        "same origin": [f"https://localhost:{port}/moved"],
        "https to http, same host and port": [f"http://localhost:{port}/plain"],
        "another host, same port": [f"https://127.0.0.1:{port}/cdn"],
        "another port": [f"https://localhost:{foreign}/cdn"],
        "another host, then back": [
            f"https://127.0.0.1:{port}/hop",
            f"https://localhost:{port}/back",
        ],
        "http, then back to https": [
            f"http://localhost:{port}/plain-hop",
            f"https://localhost:{port}/back",
        ],
    }[name]


SCENARIOS = [
    "same origin",
    "https to http, same host and port",
    "another host, same port",
    "another port",
    "another host, then back",
    "http, then back to https",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_the_token_is_sent_on_the_archive_origin_only_and_never_after_leaving_it(
    servers: tuple[DualServer, DualServer], certificate: tuple[Path, Path], scenario: str
) -> None:
    archive, other = servers
    hops = chain(archive, other, scenario)
    archive.routes["/api/v0.1/Download/file"] = hops[0]
    for here, there in itertools.pairwise(hops):
        archive.routes["/" + here.split("/", 3)[3]] = there
    fetcher = Fetcher(
        f"https://localhost:{archive.port}", TOKEN, RETRY, ssl_context=trusting(certificate[0])
    )
    try:
        data, _ = await fetcher.get_range(URI, 0, 4)
    finally:
        fetcher.close()
    assert data == BODY
    seen = archive.hops + other.hops
    assert len(seen) == len(hops) + 1
    first, *rest = seen
    assert first == Seen("https", "localhost", "/api/v0.1/Download/file", f"token {TOKEN}")
    if scenario == "same origin":
        assert [hop.authorization for hop in rest] == [f"token {TOKEN}"]
    else:
        assert [hop.authorization for hop in rest] == [None] * len(rest), rest
    # The scheme each hop really went over is the one its URL says.
    assert [hop.scheme for hop in rest] == [url.split(":", 1)[0] for url in hops]
