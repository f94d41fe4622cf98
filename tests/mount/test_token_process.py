"""The mount daemon that holds the MAST token, seen by other processes (issue 12).

The daemon gets the token on a pipe: its command line (which every local user reads) and its
environment (`/proc/PID/environ`, fixed at exec for the process's whole life) never hold it,
whether the user gave `--token-file` or `MAST_API_TOKEN`. The daemon is not dumpable
(`PR_SET_DUMPABLE` 0): a crash leaves no core file, and only a holder of CAP_SYS_PTRACE may read
its environment or memory or attach to it, even among processes of the same user.

The observers are real: the user `nobody` (through `setpriv`), and the kernel's own core dump.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastfs import system
from mastfs.sim.catalog import AUTHORIZED_TOKEN
from tests.support.mounting import Mount, mounted

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@pytest.fixture(params=["file", "environment"])
def token_mount(
    request: pytest.FixtureRequest, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Mount]:
    args, env = ["--program", "6543"], {}
    if request.param == "file":
        token = tmp_path / "token"
        token.write_text(AUTHORIZED_TOKEN + "\n")
        os.chmod(token, 0o600)
        args += ["--token-file", str(token)]
    else:
        env = {"MAST_API_TOKEN": AUTHORIZED_TOKEN}
    # The daemon's working directory, where a core file would land.
    monkeypatch.chdir(tmp_path)
    with mounted(tmp_path / "mnt", args, tmp_path / "cache", server=sim_url, env=env) as m:
        assert m.pid is not None and "Ada Authorized" in m.result.stdout
        yield m


def read_as(prefix: list[str], path: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*prefix, "cat", path], capture_output=True, timeout=30, env={"LC_ALL": "C"}
    )


@needs_root
def test_the_daemon_command_line_and_environment_hold_no_token(token_mount: Mount) -> None:
    pid = token_mount.pid
    cmdline = read_as(NOBODY, f"/proc/{pid}/cmdline")
    assert cmdline.returncode == 0, cmdline.stderr
    assert AUTHORIZED_TOKEN.encode() not in cmdline.stdout

    theirs = read_as(NOBODY, f"/proc/{pid}/environ")
    assert theirs.returncode != 0 and b"Permission denied" in theirs.stderr
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"XDG_CACHE_HOME=" in environ  # read for real
    assert AUTHORIZED_TOKEN.encode() not in environ
    assert b"MAST_API_TOKEN=" not in environ
    # The daemon has the token all the same: on a pipe.
    assert b"--token-fd" in cmdline.stdout.split(b"\0")


# The system Python (the test's own may live where `nobody` cannot reach); `mastfs.token` needs
# only the standard library.
SYSTEM_PYTHON = "/usr/bin/python3"
_HOLDER = """
import sys, time
from mastfs import token
if sys.argv[1] == "protect":
    token.protect_process()
print(token.is_dumpable(), flush=True)
time.sleep(60)
"""


@needs_root
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system Python for nobody")
@pytest.mark.parametrize("protect", [True, False])
def test_a_protected_process_is_closed_even_to_its_own_user(protect: bool) -> None:
    # The daemon runs as root here, whom nothing stops; so the same call, in a process of
    # `nobody`, watched by another process of `nobody` (the kernel's rule is the same for all).
    root = Path(__file__).resolve().parents[2]
    how = "protect" if protect else "leave"
    holder = subprocess.Popen(
        [*NOBODY, "env", f"PYTHONPATH={root}", SYSTEM_PYTHON, "-c", _HOLDER, how],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == str(not protect)
        seen = read_as(NOBODY, f"/proc/{holder.pid}/environ")
        if protect:
            assert seen.returncode != 0 and b"Permission denied" in seen.stderr
        else:
            assert seen.returncode == 0 and b"PYTHONPATH=" in seen.stdout
    finally:
        holder.kill()
        holder.wait()


def _dumps_core(pid: int, workdir: Path) -> bool:
    """Whether SIGABRT with an unlimited core limit leaves a core file in `workdir`."""
    resource.prlimit(pid, resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.kill(pid, signal.SIGABRT)
    assert system.wait_gone(pid, 30)
    return any(p.name.startswith("core") for p in workdir.iterdir())


def test_a_crash_of_the_daemon_leaves_no_core_file(token_mount: Mount, tmp_path: Path) -> None:
    control_dir = tmp_path / "control"
    control_dir.mkdir()
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    with subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=control_dir
    ) as control:
        try:
            dumped = _dumps_core(control.pid, control_dir)
        finally:
            control.kill()
    if not dumped:
        pytest.skip(f"core files do not land in the working directory here ({pattern!r})")
    pid = token_mount.pid
    assert pid is not None
    assert Path(os.readlink(f"/proc/{pid}/cwd")) == tmp_path
    assert not _dumps_core(pid, tmp_path)
