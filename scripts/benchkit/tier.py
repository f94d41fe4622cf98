"""A real nginx site cache tier in front of an archive, built from docs/scale-out.md's recipe.

Shared by the benchmark's scaleout section and tests/mount/test_scaleout.py. The configuration
is the `nginx` block of docs/scale-out.md, with only its `{{...}}` values filled in: both run
the recipe users copy. Each tier is its own nginx (master and worker
in a process group of their own, `daemon off`, every path in a temp directory); nothing touches
/etc/nginx or a system service. `kill()` ends the group with SIGKILL, as a crashed cache host.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"
_BLOCK = re.compile(
    r"<!-- nginx-template: begin -->\s*```nginx\n(.*?)```\s*<!-- nginx-template: end -->", re.S
)
START_TIMEOUT = 20.0


def template() -> str:
    """The nginx configuration block of docs/scale-out.md."""
    match = _BLOCK.search(DOC.read_text())
    assert match is not None, f"no nginx template block in {DOC}"
    return match.group(1)


def nginx_unavailable() -> str | None:
    """Why no tier can be started here, or None."""
    nginx = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx")
    if not nginx:
        return "nginx is not installed (scripts/setup --test installs Debian's nginx)"
    version = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    if "--with-http_slice_module" not in version:
        return "this nginx has no slice module"
    return None


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(
    origin: str, workdir: Path, port: int, slice_size: str = "1m", tls_port: int | None = None
) -> str:
    """The recipe's configuration for a tier on `port` in front of `origin`.

    With `tls_port`, the archive the tier talks to is `https://localhost:tls_port`: a server
    added to the same nginx that ends TLS with a throwaway certificate (`workdir/archive.pem`,
    the only CA the tier trusts) and passes the requests on to `origin`.
    """
    parts = urllib.parse.urlsplit(origin)
    assert parts.hostname is not None
    archive = (parts.scheme, parts.hostname, str(parts.port or 80))
    if tls_port is not None:
        archive = ("https", "localhost", str(tls_port))
    values = {
        "USER": "root",
        "RUN_DIR": str(workdir / "run"),
        "CACHE_DIR": str(workdir / "cache"),
        "CACHE_SIZE": "1g",
        "LISTEN": f"127.0.0.1:{port}",
        "ARCHIVE_SCHEME": archive[0],
        "ARCHIVE_HOST": archive[1],
        "ARCHIVE_PORT": archive[2],
        "SLICE": slice_size,
        "CA_FILE": str(workdir / "archive.pem")
        if tls_port
        else "/etc/ssl/certs/ca-certificates.crt",
    }
    text = template()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    left = sorted(set(re.findall(r"{{[A-Z_]+}}", text)))
    assert not left, f"placeholders of {DOC.name} not filled: {', '.join(left)}"
    if tls_port is not None:
        _throwaway_certificate(workdir / "archive.pem", workdir / "archive.key")
        front = f"""
    # Test only: the archive over TLS, as the tier meets MAST.
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {workdir / "archive.pem"};
        ssl_certificate_key {workdir / "archive.key"};
        location / {{
            proxy_pass {origin};
        }}
    }}
}}
"""
        text = text[: text.rstrip().rindex("}")] + front
    return text


def _throwaway_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for `localhost`, valid for a day."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)


class Tier:
    """One nginx tier; `url` is what `--data-cache` names."""

    def __init__(self, origin: str, workdir: Path, tls: bool = False) -> None:
        self.origin = origin
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "run").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        tls_port = _free_port() if tls else None
        self.conf.write_text(render(origin, workdir, self.port, tls_port=tls_port))

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [
                _nginx(),
                "-c",
                str(self.conf),
                "-p",
                str(self.workdir),
                "-e",
                str(self.workdir / "run" / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.proc = None
                raise AssertionError(f"nginx exited: {err}\n{self.error_log()}")
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"nginx did not listen within {START_TIMEOUT} s")

    def error_log(self) -> str:
        with suppress(OSError):
            return (self.workdir / "run" / "error.log").read_text()
        return ""

    def kill(self) -> None:
        """SIGKILL to the master and its workers (their own process group): a crash."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

    def stop(self) -> None:
        """A fast shutdown (SIGTERM), then `kill` for anything left."""
        proc = self.proc
        if proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self.kill()


@contextmanager
def running_tier(origin: str, workdir: Path, tls: bool = False) -> Iterator[Tier]:
    tier = Tier(origin, workdir, tls)
    tier.start()
    try:
        yield tier
    finally:
        tier.stop()
