"""Measurements that must not run in the benchmark's own process.

`scripts/bench --helper MODE ARGS...` runs one of them and prints one JSON line on stdout:

  pread PATH OFFSETS_FILE PASSES   64 KiB pread()s at the offsets, the latency of each, per pass
  http URL OFFSETS_FILE            the same as HTTP range GETs on one connection
  getheader PATH / section PATH    astropy on a mounted product, timed
  astroquery URI DESTINATION       Observations.download_file, timed (XDG_CONFIG_HOME from the
                                   caller names the server)
  fsspec-getheader URL / fsspec-section URL   the same astropy calls on a URL, use_fsspec=True
  fsspec-pread URL OFFSETS_FILE    the 64 KiB reads through fsspec's HTTP file (its defaults)
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from .common import RANDOM_SIZE


def helper_main(mode: str, args: list[str]) -> None:
    modes = {
        "pread": _pread,
        "http": _http,
        "getheader": _astropy,
        "section": _astropy,
        "astroquery": _astroquery,
        "fsspec-getheader": _astropy,
        "fsspec-section": _astropy,
        "fsspec-pread": _fsspec_pread,
    }
    if mode not in modes:
        raise SystemExit(f"unknown helper {mode}")
    print(json.dumps(modes[mode](mode, args)), flush=True)


def _offsets(path: str) -> list[int]:
    offsets: list[int] = json.loads(Path(path).read_text())
    return offsets


def _pread(_mode: str, args: list[str]) -> dict[str, Any]:
    path, offsets, passes = args[0], _offsets(args[1]), int(args[2])
    fd = os.open(path, os.O_RDONLY)
    try:
        out: list[list[float]] = []
        for _ in range(passes):
            lat = []
            for off in offsets:
                t = time.perf_counter()
                data = os.pread(fd, RANDOM_SIZE, off)
                lat.append(time.perf_counter() - t)
                if len(data) != RANDOM_SIZE:
                    raise SystemExit(f"short read at {off}: {len(data)}")
            out.append(lat)
    finally:
        os.close(fd)
    return {"passes": out}


def _http(_mode: str, args: list[str]) -> dict[str, Any]:
    url, offsets = urllib.parse.urlsplit(args[0]), _offsets(args[1])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    target = f"{url.path}?{url.query}"
    lat = []
    for off in offsets:
        t = time.perf_counter()
        conn.request("GET", target, headers={"Range": f"bytes={off}-{off + RANDOM_SIZE - 1}"})
        resp = conn.getresponse()
        body = resp.read()
        lat.append(time.perf_counter() - t)
        if resp.status != 206 or len(body) != RANDOM_SIZE:
            raise SystemExit(f"range GET at {off}: {resp.status}, {len(body)} bytes")
    conn.close()
    return {"passes": [lat]}


def _astropy(mode: str, args: list[str]) -> dict[str, Any]:
    from astropy.io import fits

    out: dict[str, Any] = {}
    path = args[0]
    remote = {"use_fsspec": True} if mode.startswith("fsspec-") else {}
    t = time.perf_counter()
    if mode.endswith("getheader"):
        header = fits.getheader(path, **remote)
        out["cards"] = len(header)
    else:
        with fits.open(path, **remote) as hdul:
            cut = hdul[1].section[0, 0, 0:16, 0:16]
            out["shape"] = list(cut.shape)
    out["seconds"] = time.perf_counter() - t
    return out


def _fsspec_pread(_mode: str, args: list[str]) -> dict[str, Any]:
    import fsspec

    url, offsets = args[0], _offsets(args[1])
    lat = []
    with fsspec.open(url, "rb") as f:
        for off in offsets:
            t = time.perf_counter()
            f.seek(off)
            data = f.read(RANDOM_SIZE)
            lat.append(time.perf_counter() - t)
            if len(data) != RANDOM_SIZE:
                raise SystemExit(f"short fsspec read at {off}: {len(data)}")
    return {"passes": [lat]}


def _astroquery(_mode: str, args: list[str]) -> dict[str, Any]:
    # The config is read when astroquery is imported: XDG_CONFIG_HOME is set by the caller.
    from astroquery.mast import Observations

    uri, destination = args[0], Path(args[1])
    t = time.perf_counter()
    status = Observations.download_file(uri, local_path=str(destination), cache=False)
    out: dict[str, Any] = {"seconds": time.perf_counter() - t}
    out["status"] = list(status)
    out["bytes"] = destination.stat().st_size
    destination.unlink()
    return out
