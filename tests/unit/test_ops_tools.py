"""The pure parts of the operations tools (issue 15): progress, the cache-bound check, the
status text, mount(8)'s arguments, the config file, the metrics address; and the two sockets
(sd_notify, syslog) against real unix datagram sockets."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastfs import config, logtarget, notify
from mastfs.cli import build_parser
from mastfs.metrics import parse_address
from mastfs.mounthelper import HelperError, translate
from mastfs.progress import Progress, format_duration
from mastfs.status import format_status, hit_rate
from mastfs.warm import File, WarmError, check_fits, make_plan

MB = 1_000_000


def test_progress_line_shows_files_bytes_rate_and_eta() -> None:
    p = Progress(files_done=3, files_total=12, bytes_done=40 * MB, bytes_total=100 * MB, elapsed=4)
    assert p.rate == 10 * MB and p.eta == 6
    line = p.line()
    assert "3/12 files" in line and "40 MB/100 MB" in line and "10 MB/s" in line
    assert line.endswith("ETA 6s") and "40%" in line
    assert Progress(0, 1, 0, 5, 0).line().endswith("-/s  ETA -")
    assert format_duration(185) == "3m 05s" and format_duration(7800) == "2h 10m"


def test_a_set_larger_than_the_cache_is_refused_counting_what_is_cached() -> None:
    files = [
        File(Path(f"/m/{i}"), str(i), 10 * MB, cached) for i, cached in enumerate((0, 10 * MB))
    ]
    plan = make_plan(files)
    assert len(plan.files) == 1 and len(plan.complete) == 1
    assert plan.needed_bytes == 10 * MB and plan.total_bytes == 20 * MB
    check_fits(plan, 20 * MB)
    check_fits(plan, None)
    with pytest.raises(WarmError, match=r"2 files hold 20 MB \(10 MB not cached yet\)"):
        check_fits(plan, 20 * MB - 1)
    assert make_plan(files, unreadable=3).describe() == (
        "2 files, 20 MB: 10 MB to fetch, 1 files cached already; "
        "3 exclusive-access files left out (not readable by this login)"
    )


def test_status_text_from_a_report() -> None:
    report = {
        "mountpoint": "/m",
        "pid": 7,
        "uptime": 75,
        "query": "program 2734",
        "server": "https://mast",
        "summary": "2 of 9 files selected",
        "cache_bytes": 5 * MB,
        "cache_limit": 50 * MB,
        "cache_dir": "/c",
        "counters": {"hits": 3, "misses": 1, "bytes_fetched": 4 * MB, "requests": 2},
        "hit_rate": hit_rate({"hits": 3, "misses": 1}),
        "errors": [{"uri": "mast:JWST/x.fits", "error": "timeout\x1b[2J"}],
        "error_count": 1,
    }
    text = format_status(report)
    assert "(pid 7, up 1m 15s)" in text and "5.0 MB of 50 MB in /c" in text
    assert "75% (3 of 4 blocks)" in text and "4.0 MB in 2 requests" in text
    assert "mast:JWST/x.fits: timeout" in text and "\x1b" not in text
    assert hit_rate({}) is None


@pytest.mark.parametrize(
    ("source", "options", "expected"),
    [
        ("2734", ["-o", "rw,_netdev,noauto,x-systemd.automount"], ["--program", "2734"]),
        (
            "program=2734,1558",
            ["-o", "cache_size=10G,allow_other"],
            ["--program", "2734,1558", "--cache-size", "10G", "--allow-other"],
        ),
        (
            "collection=JWST",
            ["-n", "-o", "group=CAL,group=X1DINTS"],
            ["--collection", "JWST", "--group", "CAL", "--group", "X1DINTS"],
        ),
    ],
)
def test_mount_arguments_become_a_mastfs_mount(
    source: str, options: list[str], expected: list[str]
) -> None:
    assert translate(source, "/mnt/m", options) == ["mount", *expected, "/mnt/m"]


def test_mount_helper_fake_demo_and_refusals() -> None:
    assert translate("2734", "/m", ["-f", "-o", "rw"]) is None
    assert translate("demo", "/m", ["-o", "flat_is_not_checked_here"])[0] == "demo"  # type: ignore[index]
    with pytest.raises(HelperError, match="invalid source 'bogus'"):
        translate("bogus", "/m", [])
    with pytest.raises(HelperError, match="'foreground' cannot be used"):
        translate("2734", "/m", ["-o", "foreground"])


def write_config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def parse_with(path: Path, argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    later = config.apply(sub.choices, config.load(path), path)
    args = parser.parse_args(argv)
    config.fill(args, later)
    return args


def test_config_fills_what_the_command_line_left_unset(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'cache_size = "2G"\nlayout = "flat"\nparallel = 3\n'
        '[mount]\nrecommended = true\nlevel = ["3"]\n',
    )
    args = parse_with(path, ["mount", "--program", "1", "--layout", "nested", "/m"])
    assert args.cache_size == 2 << 30 and args.layout == "nested"  # the command line wins
    assert args.quick == "recommended" and args.level == ["3"]
    args = parse_with(path, ["ls", "--program", "1", "--level", "2b"])
    assert args.level == ["2b"] and args.quick is None and args.layout == "flat"
    assert parse_with(path, ["warm", "/m"]).parallel == 3


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ('cache_sise = "1G"\n', 0o600, "unknown key 'cache_sise'"),
        ('cache_size = "1X"\n', 0o600, "cache_size: invalid size '1X'"),
        ("[mount]\nparallel = 2\n", 0o600, r"\[mount\] has no option 'parallel'"),
        ('token = "secret"\n', 0o600, "token does not belong here"),
        ('cache_size = "1G"\n', 0o666, "writable by others"),
        ("cache_size = \n", 0o600, "Invalid value"),
    ],
)
def test_a_bad_config_is_refused_naming_the_file(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    path = write_config(tmp_path, text, mode)
    with pytest.raises(config.ConfigError, match=message) as caught:
        parse_with(path, ["mount", "--program", "1", "/m"])
    assert str(path) in str(caught.value) and "secret" not in str(caught.value)


def test_metrics_addresses_default_to_loopback() -> None:
    assert parse_address("9108") == ("127.0.0.1", 9108)
    assert parse_address("[::1]:9108") == ("::1", 9108)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    for bad in ("x", "99999", ":80", "a b:80", "1.2.3.4:"):
        with pytest.raises(ValueError, match="invalid metrics"):
            parse_address(bad)


@pytest.fixture
def datagrams(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        yield path, sock


def test_sd_notify_reaches_a_real_socket(
    datagrams: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = datagrams
    monkeypatch.delenv(notify.NOTIFY_SOCKET, raising=False)
    assert not notify.ready("nobody listens")
    monkeypatch.setenv(notify.NOTIFY_SOCKET, path)
    assert notify.ready("mounted x\nat y", mainpid=42)
    assert sock.recv(4096).decode().split("\n") == [
        "READY=1",
        "STATUS=mounted x at y",
        "MAINPID=42",
    ]


def test_syslog_records_reach_a_real_socket(datagrams: tuple[str, socket.socket]) -> None:
    path, sock = datagrams
    handler = logtarget.handler(logging.Formatter(logtarget.FORMAT), path)
    try:
        handler.emit(
            logging.LogRecord("mastfs.x", logging.WARNING, "", 0, "hello %s", ("y",), None)
        )
    finally:
        handler.close()
    assert f"mastfs[{os.getpid()}]: WARNING mastfs.x: hello y".encode() in sock.recv(4096)
    with pytest.raises(OSError):
        logtarget.handler(logging.Formatter(), path + "-nothing")


def test_a_files_attributes_give_back_what_the_selection_needs() -> None:
    from mastfs.model import Product
    from mastfs.selection import Selection, select
    from mastfs.xattrs import product_from_xattrs, product_xattrs

    p = Product(
        dataURI="mast:JWST/product/jw1_x1dints.fits",
        productFilename="jw1_x1dints.fits",
        obs_id="jw1",
        obs_collection="JWST",
        size=123,
        calib_level=2,
        productType="SCIENCE",
        productSubGroupDescription="X1DINTS",
        dataRights="EXCLUSIVE_ACCESS",
        proposal_id="2734",
    )
    back = product_from_xattrs(product_xattrs(p, readable=True), p.productFilename)
    for sel in (
        Selection.build(levels=("2b",), groups=("x1dints",)),
        Selection.build(categories=("SCIENCE",), regex=("/x1d/",)),
        Selection.build(public_only=True),
        Selection.build(groups=("CAL",)),
    ):
        assert select([back], sel) == ([back] if select([p], sel) else [])
    assert (back.dataURI, back.size, back.is_exclusive) == (p.dataURI, 123, True)


def test_bash_completion_knows_the_commands_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    from mastfs.cli import main

    assert main(["completion", "bash"]) == 0
    script = tmp_path / "mastfs"
    script.write_text(capsys.readouterr().out)
    probe = (
        f"source {script}; COMP_WORDS=(mastfs wa); COMP_CWORD=1; _shtab_mastfs; "
        'echo "${COMPREPLY[@]}"; COMP_WORDS=(mastfs warm --par); COMP_CWORD=2; _shtab_mastfs; '
        'echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["warm", "--parallel"]


GENERATOR = Path("/lib/systemd/system-generators/systemd-fstab-generator")


def test_the_documented_fstab_line_makes_units_and_a_valid_mount(tmp_path: Path) -> None:
    import subprocess

    docs = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    line = next(
        x for x in docs.splitlines() if len(x.split()) == 6 and x.split()[2] == "fuse.mastfs"
    )
    source, where, _, options, *_ = line.split()
    argv = translate(source, where, ["-o", options])
    assert argv is not None
    build_parser().parse_args(argv)  # every option is one of `mastfs mount`'s
    if not GENERATOR.exists():
        pytest.skip("no systemd-fstab-generator here")
    fstab = tmp_path / "fstab"
    fstab.write_text(line + "\n")
    out = tmp_path / "units"
    out.mkdir()
    env = {**os.environ, "SYSTEMD_FSTAB": str(fstab), "SYSTEMD_PROC_CMDLINE": ""}
    done = subprocess.run([str(GENERATOR), out, out, out], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    unit = out / (where.strip("/").replace("/", "-") + ".mount")
    assert "Type=fuse.mastfs" in unit.read_text() and f"What={source}" in unit.read_text()
    # _netdev: mounted after the network, with the remote filesystems
    assert (out / "remote-fs.target.requires" / unit.with_suffix(".automount").name).exists()


def test_the_documented_config_file_is_valid(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text()
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    path = write_config(tmp_path, example)
    args = parse_with(path, ["mount", "--program", "2734", "/m"])
    assert (args.quick, args.level, args.metrics) == (
        "recommended",
        ["2b", "3"],
        ("127.0.0.1", 9108),
    )
    assert args.cache_size == 200 << 30 and str(args.token_file) == "/home/me/.mast-token"
    assert parse_with(path, ["warm", "/m"]).parallel == 8


async def test_the_status_report_holds_still_between_size_and_value() -> None:
    from mastfs.status import reused

    made: list[int] = []

    async def make() -> dict[str, object]:
        made.append(1)
        return {"n": len(made)}

    report = reused(make, seconds=3600)
    assert await report() == await report() == {"n": 1}
    assert await reused(make, seconds=0)() == {"n": 2}


def test_mount_helper_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from mastfs.mounthelper import main

    assert main(["--help"]) == 0
    assert "fuse.mastfs  _netdev" in capsys.readouterr().out
    assert main(["2734"]) == 2
    assert capsys.readouterr().err.startswith("usage: mount.mastfs SOURCE MOUNTPOINT")
    assert main(["2734", "/m", "-o", "cache_sise=1G"]) == 2
    assert "unknown option 'cache_sise'" in capsys.readouterr().err
