"""The MAST token on every surface a mount has (issue 12): it must appear on none of them.

A mount of the exclusive-access program 6543 with the simulator's authorized token, given by
`--token-file` and by `MAST_API_TOKEN`, with `--debug` logging, is exercised as a user would:
`ls -lR`, reads of exclusive-access and public files, every extended attribute (`getfattr -R -d`),
the virtual files, `mastfs select`, a read that fails, then a token the archive rejects and a
token file with a second line. Afterwards the token is looked for in: every byte each command
printed, every file under the cache directory (blocks, query cache, daemon log), the runtime
directory (pid files) and HOME (astropy's cache), every extended attribute value, the virtual
files, and the daemon's `/proc/PID/cmdline` and `/proc/PID/environ`.

Every request the mount makes goes through a recording HTTP proxy (`http_proxy`, which both
astroquery and the fetcher honour): the token must reach no origin but the simulator's.
"""

from __future__ import annotations

import errno
import http.client
import http.server
import os
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mastfs.sim.catalog import AUTHORIZED_TOKEN, TOKENS
from tests.support import reads
from tests.support.mounting import Mount, mounted, run_cli
from tests.support.sim import Sim

# Never a token the simulator knows: the archive rejects it.
REJECTED_TOKEN = "mastsim-rejected-7f3a9c2e"
# What a careless user keeps on the token file's second line.
SECOND_LINE = "my-mast-portal-password-Hx7"
SECRETS = (AUTHORIZED_TOKEN, REJECTED_TOKEN, SECOND_LINE)
_HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te"}


@dataclass
class Seen:
    """One request through the proxy: where it went and the credentials it carried."""

    method: str
    origin: str
    path: str
    credentials: str


@dataclass
class Recorder:
    """A forwarding proxy for plain HTTP that records every request; only `allowed` is reached."""

    allowed: str
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(recorder: Recorder) -> type[http.server.BaseHTTPRequestHandler]:
    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            origin = f"{url.scheme}://{url.netloc}"
            credentials = " ".join(
                v for k, v in self.headers.items() if k.lower() in ("authorization", "cookie")
            )
            with recorder.lock:
                recorder.seen.append(Seen(self.command, origin, url.path, credentials))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if origin != recorder.allowed:
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            target = url.path + (f"?{url.query}" if url.query else "")
            conn = http.client.HTTPConnection(url.netloc, timeout=60)
            try:
                conn.request(self.command, target, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            length_header = answer.getheader("Content-Length")
            if self.command == "HEAD" and length_header is not None:
                self.send_header("Content-Length", length_header)
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = _forward

    return Forward


@contextmanager
def recording_proxy(allowed: str) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(allowed)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Surfaces:
    """Everything a user or another process could see, as (label, bytes)."""

    items: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, label: str, data: bytes | str) -> None:
        self.items.append((label, data.encode() if isinstance(data, str) else data))

    def command(self, label: str, done: object) -> None:
        for stream in ("stdout", "stderr"):
            self.add(f"{label} {stream}", getattr(done, stream))

    def files_under(self, root: Path) -> int:
        count = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                self.add(str(path), path.read_bytes())
                count += 1
        return count

    def leaks(self) -> list[str]:
        return [
            f"{label}: {secret}"
            for label, data in self.items
            for secret in SECRETS
            if secret.encode() in data
        ]


def _private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def _exclusive_and_public(m: Mount) -> tuple[Path, Path, Path]:
    """Two exclusive-access FITS files (one to read, one to fail) and a public file."""
    exclusive: list[Path] = []
    public: Path | None = None
    for dirpath, _, files in reads.os_call("walk", m.path):
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.parent == m.path:
                continue
            access = reads.getxattr(path, "user.mast.access")
            if access == b"EXCLUSIVE_ACCESS" and name.endswith(".fits"):
                exclusive.append(path)
            elif access == b"PUBLIC" and public is None:
                public = path
    assert len(exclusive) >= 2 and public is not None
    return exclusive[0], exclusive[1], public


@pytest.mark.parametrize("given_by", ["file", "environment"])
def test_the_token_appears_on_no_surface(
    given_by: str, sim: Sim, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"  # everything mastfs and astropy write lives here
    home, run_dir, cache = state / "home", state / "run", state / "cache"
    for directory in (home, run_dir):
        directory.mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)

    def token_args(token_text: str) -> tuple[list[str], dict[str, str]]:
        if given_by == "file":
            path = _private_file(secrets_dir / "token", token_text)
            return ["--token-file", str(path)], {}
        return [], {"MAST_API_TOKEN": token_text}

    surfaces = Surfaces()
    ada = TOKENS[AUTHORIZED_TOKEN].display_name
    with recording_proxy(sim_url) as (proxy, recorder):
        monkeypatch.setenv("http_proxy", proxy)
        monkeypatch.setenv("no_proxy", "")
        base = ["--program", "6543", "--debug", "--timeout", "3"]
        extra, env = token_args(f"{AUTHORIZED_TOKEN}\n")
        with mounted(tmp_path / "mnt", [*base, *extra], cache, server=sim_url, env=env) as m:
            surfaces.command("mount", m.result)
            assert f"(nested, {ada})" in m.result.stdout
            assert m.pid is not None
            for name in ("cmdline", "environ"):
                surfaces.add(f"/proc/daemon/{name}", Path(f"/proc/{m.pid}/{name}").read_bytes())

            surfaces.add("ls -lR", reads.run_reader(["ls", "-lR", str(m.path)], m.path).stdout)
            exclusive, failing, public = _exclusive_and_public(m)
            surfaces.add("exclusive file", reads.pread(exclusive, 0, 1 << 20))
            surfaces.add("public file", reads.read_bytes(public))
            for name in ("manifest.html", "selection.csv"):
                surfaces.add(name, reads.read_bytes(m.path / name))

            for select in (["--group", "CAL,I2D"], [], ["--all"]):
                surfaces.command("select", run_cli(["select", str(m.path), *select]))

            # A read that fails: the error goes to the log and the manifest.
            sim.faults(error_rate=1, error_downloads_only=True, scope=failing.name)
            with pytest.raises(OSError) as failed:
                reads.pread(failing, 0, 1 << 20)
            assert failed.value.errno == errno.EIO
            sim.clear_faults()
            manifest = reads.read_bytes(m.path / "manifest.html")
            surfaces.add("manifest after a failed read", manifest)

            dump = reads.run_reader(
                ["getfattr", "-R", "-d", "-m", "-", "-e", "text", "--absolute-names", str(m.path)],
                m.path,
            )
            assert dump.returncode == 0, dump.stderr
            assert b"user.mast.readable" in dump.stdout and b"user.mastfs.summary" in dump.stdout
            surfaces.command("getfattr -R -d", dump)
            root = reads.run_reader(["getfattr", "-d", "-m", "-", str(m.path)], m.path)
            surfaces.command("getfattr root", root)

        # The archive rejects a token: the error line names no token.
        extra, env = token_args(REJECTED_TOKEN)
        mnt2 = tmp_path / "mnt2"
        mnt2.mkdir()
        done = run_cli(
            ["mount", *base, *extra, "--server", sim_url, "--cache-dir", str(cache), str(mnt2)],
            env=env,
        )
        assert done.returncode == 1 and "token was rejected" in done.stderr, done.stderr
        surfaces.command("rejected token", done)

        # A token file (or variable) with a second line is refused before anything starts.
        extra, env = token_args(f"{AUTHORIZED_TOKEN}\n{SECOND_LINE}\n")
        done = run_cli(
            ["ls", "--program", "6543", "--server", sim_url, "--cache-dir", str(cache), *extra],
            env=env,
        )
        assert done.returncode == 2 and "more than one line" in done.stderr, done.stderr
        surfaces.command("two-line token", done)

    # Files: the cache (blocks, query cache, daemon logs), pid files, HOME.
    assert surfaces.files_under(state) > 3
    logs = list((cache / "logs").glob("*.log"))
    assert logs and any(b" DEBUG " in log.read_bytes() for log in logs), "no --debug log"
    assert surfaces.leaks() == []

    # The token went to the simulator and nowhere else; it was sent (the reads needed it).
    carrying = [s for s in recorder.seen if AUTHORIZED_TOKEN in s.credentials]
    assert carrying, "the authorized token was never sent"
    assert {s.origin for s in carrying} == {sim_url}
    assert {s.origin for s in recorder.seen} == {sim_url}
