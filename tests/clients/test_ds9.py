"""SAOImage DS9 opens a product straight from a mastfs mount and is questioned through XPA.

DS9 runs on its own Xvfb (which picks a free display number itself, `-displayfd`) and speaks
XPA over unix sockets in a private directory with its own `xpans` name server, so two runs never
meet. Every process started here runs in its own session and is killed in `finally`; every
subprocess call has a timeout, so a wedged DS9 fails the test instead of hanging it.

Without DS9, Xvfb or the XPA tools the module is skipped, except in CI (`$CI` set), where
`scripts/setup --test` installs them and their absence is a failure.
"""

from __future__ import annotations

import io
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from astropy.io import fits

from mastfs.sim.catalog import default_catalog
from tests.support.catalog import catalog_rows
from tests.support.mounting import Mount, mounted
from tests.support.sim import SimControl

log = logging.getLogger(__name__)

pytestmark = pytest.mark.mount

TOOLS = ("ds9", "Xvfb", "xpans", "xpaget", "xpaaccess")
# The SOSS rate image of the first segment: a 2048 x 256 float32 SCI extension.
PRODUCT = "jw02734001001_02101_00001-seg001_nis_rate.fits"
START_TIMEOUT = 90.0
XPA_TIMEOUT = 30.0
WINDOW = (1024, 768)


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must provide it (scripts/setup --test installs it)")
    pytest.skip(reason)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process's own session, then SIGKILL it; reap the leader."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def read_display_number(fd: int, proc: subprocess.Popen[bytes], deadline: float) -> str | None:
    """The line Xvfb writes to its `-displayfd` once it accepts clients; None if it gave up."""
    text = b""
    while not text.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                return None
            text += chunk
        elif proc.poll() is not None:
            return None
    return text.decode().strip() or None


@dataclass
class Ds9:
    name: str
    env: dict[str, str]
    display: str
    path: Path
    uri: str
    log_path: Path

    def get_bytes(self, *args: str) -> bytes:
        done = subprocess.run(
            ["xpaget", self.name, *args], capture_output=True, env=self.env, timeout=XPA_TIMEOUT
        )
        assert done.returncode == 0, (
            f"xpaget {' '.join(args)} failed: {done.stderr.decode(errors='replace')}\n"
            f"ds9 log:\n{tail(self.log_path)}"
        )
        return done.stdout

    def get(self, *args: str) -> str:
        return self.get_bytes(*args).decode().strip()

    def set(self, *args: str) -> None:
        done = subprocess.run(
            ["xpaset", "-p", self.name, *args],
            capture_output=True,
            env=self.env,
            timeout=XPA_TIMEOUT,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        unavailable(
            f"SAOImage DS9 test needs {', '.join(missing)} "
            "(apt-get install saods9 xvfb xauth xpa-tools)"
        )


@pytest.fixture(scope="module")
def display(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("xvfb")
    read_fd, write_fd = os.pipe()
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(logs / "xvfb.log", "wb") as out:
            proc = subprocess.Popen(
                [
                    "Xvfb",
                    "-displayfd",
                    str(write_fd),
                    "-screen",
                    "0",
                    "1280x1024x24",
                    "-nolisten",
                    "tcp",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(write_fd,),
                start_new_session=True,
            )
        os.close(write_fd)
        write_fd = -1
        number = read_display_number(read_fd, proc, time.monotonic() + 30)
        if number is None:
            unavailable(f"Xvfb could not start a display: {tail(logs / 'xvfb.log')}")
        yield f":{number}"
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        stop(proc)


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory, sim_url: str, tools: None) -> Iterator[Mount]:
    root = tmp_path_factory.mktemp("ds9-mount")
    with mounted(root / "mnt", ["--program", "2734"], root / "cache", server=sim_url) as m:
        yield m


def product_row(filename: str) -> dict:
    for row in catalog_rows("2734"):
        if row["productFilename"] == filename:
            return row
    raise AssertionError(f"{filename} is not in program 2734")


@pytest.fixture(scope="module")
def reference() -> Iterator[fits.HDUList]:
    """The product as the archive serves it, parsed from the simulator's bytes."""
    sim_file = default_catalog().file(product_row(PRODUCT)["dataURI"])
    assert sim_file is not None
    with fits.open(io.BytesIO(bytes(sim_file.read(0, sim_file.size)))) as hdul:
        yield hdul


@pytest.fixture(scope="module")
def ds9(
    mount: Mount, display: str, sim_control: SimControl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ds9]:
    row = product_row(PRODUCT)
    path = mount.path / row["obs_collection"] / row["obs_id"] / row["productFilename"]
    logs = tmp_path_factory.mktemp("ds9")
    home = logs / "home"
    home.mkdir()
    # Unix socket paths are limited to 108 bytes: keep the XPA directory short.
    xpa_dir = Path(tempfile.mkdtemp(prefix="ds9xpa-"))
    name = f"mastfs-test-{os.getpid()}"
    env = {
        **os.environ,
        "DISPLAY": display,
        "HOME": str(home),
        "XPA_METHOD": "local",
        "XPA_TMPDIR": str(xpa_dir),
    }
    sim_control.reset_stats()
    xpans: subprocess.Popen[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(logs / "xpans.log", "wb") as out:
            xpans = subprocess.Popen(
                ["xpans", "-l", str(xpa_dir / "registry")],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while not (xpa_dir / "xpans_unix").exists():
            if xpans.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"xpans did not start: {tail(logs / 'xpans.log')}")
            time.sleep(0.05)
        width, height = WINDOW
        with open(logs / "ds9.log", "wb") as out:
            proc = subprocess.Popen(
                [
                    "ds9",
                    "-title",
                    name,
                    "-geometry",
                    f"{width}x{height}+0+0",
                    f"{path}[SCI]",
                    "-zscale",
                    "-zoom",
                    "to",
                    "fit",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        client = Ds9(name, env, display, path, row["dataURI"], logs / "ds9.log")
        wait_until_loaded(client, proc, time.monotonic() + START_TIMEOUT)
        yield client
    finally:
        stop(proc)
        stop(xpans)
        shutil.rmtree(xpa_dir, ignore_errors=True)


def wait_until_loaded(client: Ds9, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll `xpaaccess` until DS9 answers, then `xpaget file` until the product is loaded."""
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"ds9 exited ({proc.returncode}) before answering XPA:\n{tail(client.log_path)}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"ds9 not ready within {START_TIMEOUT:.0f} s:\n{tail(client.log_path)}")
        with suppress(subprocess.TimeoutExpired):
            access = subprocess.run(
                ["xpaaccess", "-n", client.name],
                capture_output=True,
                text=True,
                env=client.env,
                timeout=10,
            )
            if access.stdout.strip() not in ("", "0"):
                loaded = subprocess.run(
                    ["xpaget", client.name, "file"],
                    capture_output=True,
                    text=True,
                    env=client.env,
                    timeout=10,
                )
                if loaded.returncode == 0 and loaded.stdout.strip():
                    return
        time.sleep(0.2)


def test_ds9_names_the_mounted_file(ds9: Ds9, sim_control: SimControl) -> None:
    assert ds9.get("file") == f"{ds9.path}[SCI]"
    # DS9's bytes came through the mount from the archive, not from anywhere else.
    assert sim_control.sent(ds9.uri) > 0


def test_ds9_headers_match_the_archive(ds9: Ds9, reference: fits.HDUList) -> None:
    primary = reference[0].header
    # `fits header -1`: the loaded extension with the primary header inherited.
    merged = fits.Header.fromstring(ds9.get("fits", "header", "-1"), sep="\n")
    for key in ("TELESCOP", "INSTRUME", "OBS_ID", "PROGRAM", "FILENAME"):
        assert merged[key] == primary[key], key
    assert merged["OBS_ID"] == product_row(PRODUCT)["obs_id"]
    assert merged["TELESCOP"] == "JWST" and merged["INSTRUME"] == "NIRISS"
    # `fits header`: exactly the SCI extension's cards.
    sci = fits.Header.fromstring(ds9.get("fits", "header"), sep="\n")
    expected = reference["SCI"].header
    assert [(c.keyword, c.value) for c in sci.cards] == [
        (c.keyword, c.value) for c in expected.cards
    ]


def test_ds9_size_and_pixels_match_the_archive(ds9: Ds9, reference: fits.HDUList) -> None:
    expected = np.asarray(reference["SCI"].data)
    height, width = expected.shape
    assert ds9.get("fits", "size").split() == [str(width), str(height)]
    assert ds9.get("fits", "bitpix") == "-32"
    # The image DS9 holds in memory, written back out by DS9 itself.
    with fits.open(io.BytesIO(ds9.get_bytes("fits", "image"))) as got:
        image = next(h for h in got if h.data is not None)
        assert np.array_equal(np.asarray(image.data), expected, equal_nan=True)
    # A 3 x 2 box read by DS9: `x,y = value` lines in no set order, 1-based image coordinates.
    box: dict[tuple[int, int], float] = {}
    for line in ds9.get("data", "image", "100", "40", "3", "2", "no").splitlines():
        where, _, text = line.partition("=")
        x, y = (int(v) for v in where.split(","))
        box[x, y] = float(text)
    assert sorted(box) == [(x, y) for x in (100, 101, 102) for y in (40, 41)]
    for (x, y), value in box.items():
        assert value == pytest.approx(float(expected[y - 1, x - 1]), rel=1e-4), (x, y)


def test_ds9_displays_the_trace(ds9: Ds9) -> None:
    """A screenshot of DS9's window: a dark sky band crossed by the bright SOSS orders."""
    from PIL import ImageGrab

    ds9.set("zoom", "to", "fit")
    ds9.get("file")  # a round trip, so the redraw has been handled
    shot = ImageGrab.grab(bbox=(0, 0, *WINDOW), xdisplay=ds9.display)
    keep = os.environ.get("MASTFS_DS9_SCREENSHOT")
    if keep:
        shot.save(keep)
    grey = np.asarray(shot.convert("L"), dtype=np.int16)
    # DS9's panels and menus are light grey; only the displayed image makes rows mostly black.
    dark_rows = np.flatnonzero((grey < 40).mean(axis=1) > 0.6)
    assert len(dark_rows) >= 40, f"no image band in the DS9 window ({len(dark_rows)} dark rows)"
    band = grey[dark_rows.min() : dark_rows.max() + 1]
    # Both spectral orders cross the whole width: bright pixels in nearly every column.
    assert (band > 200).any(axis=0).mean() > 0.9
