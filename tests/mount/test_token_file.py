"""Token files of every kind through the real command (issue 12).

A token file that holds anything but one token, or that cannot be read as a regular file, stops
`mastfs mount` and `mastfs ls` with exit 2 and one line naming the file and the fault, never its
content; a FIFO nobody writes does not hang the command; a token file others may read works, with
a warning.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from mastfs.sim.catalog import AUTHORIZED_TOKEN, TOKENS
from mastfs.token import MAX_FILE_BYTES
from tests.support.mounting import MASTFS, mounted, run_cli

SECRET = "correct-horse-battery-staple"
# Root reads any file; without these capabilities it is held to the file's mode like anyone.
NO_DAC_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping capabilities needs root")


def ls_with(
    token_file: Path, sim_url: str, tmp_path: Path, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [
        *(prefix or []),
        *MASTFS,
        "ls",
        "--program",
        "6543",
        "--server",
        sim_url,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--token-file",
        str(token_file),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def assert_refused(done: subprocess.CompletedProcess[str], path: Path, fault: str) -> None:
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("mastfs: error: ") and f"token file {path}" in line, line
    assert fault in line, line
    assert SECRET not in done.stdout + done.stderr
    assert AUTHORIZED_TOKEN not in done.stdout + done.stderr


def private_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"", "is empty"),
        (b"\n \n", "is empty"),
        (f"{AUTHORIZED_TOKEN}\n{SECRET}\n".encode(), "has more than one line"),
        (f"{AUTHORIZED_TOKEN} {SECRET}".encode(), "has whitespace inside the token"),
        (f"{SECRET}\x00\xff\xfe".encode("latin-1"), "holds characters other than printable"),
        (SECRET.encode() * 20, "holds 560 characters"),
        (SECRET.encode() * 1000, f"is larger than {MAX_FILE_BYTES} bytes"),
    ],
)
def test_a_token_file_with_anything_but_one_token_is_refused_without_echo(
    sim_url: str, tmp_path: Path, data: bytes, fault: str
) -> None:
    path = private_file(tmp_path / "token", data)
    assert_refused(ls_with(path, sim_url, tmp_path), path, fault)


def test_a_directory_missing_file_or_fifo_is_refused_at_once(sim_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    assert_refused(ls_with(directory, sim_url, tmp_path), directory, "is not a regular file")
    missing = tmp_path / "missing"
    assert_refused(ls_with(missing, sim_url, tmp_path), missing, "No such file or directory")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    # Opened without O_NONBLOCK, this would wait for a writer until the timeout below.
    assert_refused(ls_with(fifo, sim_url, tmp_path), fifo, "is not a regular file")
    dev = Path("/dev/zero")
    assert_refused(ls_with(dev, sim_url, tmp_path), dev, "is not a regular file")


@needs_root
def test_an_unreadable_token_file_is_refused(sim_url: str, tmp_path: Path) -> None:
    path = private_file(tmp_path / "token", f"{SECRET}\n".encode())
    os.chmod(path, 0o000)
    done = ls_with(path, sim_url, tmp_path, prefix=NO_DAC_OVERRIDE)
    assert_refused(done, path, "Permission denied")
    assert done.stderr.startswith(f"mastfs: error: cannot read token file {path}")


def test_a_token_in_the_environment_follows_the_same_rule(sim_url: str, tmp_path: Path) -> None:
    done = run_cli(
        ["ls", "--program", "6543", "--server", sim_url, "--cache-dir", str(tmp_path / "c")],
        env={"MAST_API_TOKEN": f"{AUTHORIZED_TOKEN}\n{SECRET}"},
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "mastfs: error: environment variable MAST_API_TOKEN has more than one line: "
        "it must hold only the MAST API token"
    ]


def test_a_token_file_others_may_read_works_with_a_warning(sim_url: str, tmp_path: Path) -> None:
    path = private_file(tmp_path / "token", f"\n{AUTHORIZED_TOKEN}\r\n\n".encode())
    os.chmod(path, 0o644)
    ada = TOKENS[AUTHORIZED_TOKEN].display_name
    done = ls_with(path, sim_url, tmp_path)
    assert done.returncode == 0, done.stderr
    warning = (
        f"mastfs: warning: token file {path} is readable by group and others (mode 0644): "
        f"chmod 600 {path}"
    )
    assert done.stderr.splitlines()[0] == warning
    assert "cannot be read" not in done.stderr  # the token was used
    # A mount warns once, from the command the user ran (the daemon never reads the file).
    with mounted(
        tmp_path / "mnt",
        ["--program", "6543", "--token-file", str(path)],
        tmp_path / "c2",
        server=sim_url,
    ) as m:
        assert m.result.stderr.splitlines().count(warning) == 1, m.result.stderr
        assert f"(nested, {ada})" in m.result.stdout
    os.chmod(path, 0o600)
    done = ls_with(path, sim_url, tmp_path)
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
