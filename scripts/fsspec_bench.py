#!/usr/bin/env python3
"""`mast://` against astropy's `use_fsspec=True` on the product's HTTP URL, over a modelled link.

    python scripts/fsspec_bench.py [--latency-ms 80] [--bandwidth 25000000] [--reads 200]

Starts the archive simulator with `latency_ms` (one round trip per request) and `bandwidth`
(bytes/s per connection), then, for the 4.32 GiB product of program 2734, runs each access in a
fresh Python process (modules imported before the clock starts, as in a notebook), alternating
the two ways, with a fresh mastfs cache each time:
`fits.getheader`, `fits.open` + a 16×16 `.section` mid-cube, and `--reads` random 64 KiB reads
(`open` + `seek` + `read`, seeded). Bytes fetched are the simulator's own count for the product.
A last row reads the header through `mast://` again in a new process on the warm cache.
The HTTP reference needs aiohttp (fsspec's HTTP filesystem). Run it under the bench lock.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

PRODUCT = "mast:JWST/product/jw02734001001_02101_00001-seg003_nis_uncal.fits"
MiB = 1 << 20

_CHILD = """
import json, random, sys, time
t0 = time.perf_counter()
import fsspec
from astropy.io import fits
mode, url, reads = sys.argv[1], sys.argv[2], int(sys.argv[3])
# A notebook has its modules imported already: the implementation too, before the clock starts.
fsspec.get_filesystem_class(url.split("://")[0])
t = time.perf_counter()
out = {"import_s": t - t0}
if mode == "getheader":
    out["cards"] = len(fits.getheader(url, use_fsspec=True))
elif mode == "section":
    with fits.open(url, use_fsspec=True) as hdul:
        n = hdul[1].shape
        out["shape"] = list(hdul[1].section[n[0] // 2, n[1] // 2, 100:116, 100:116].shape)
else:
    rng = random.Random(2734)
    times = []
    with fsspec.open(url, "rb") as f:
        size = f.size
        for _ in range(reads):
            offset = rng.randrange(0, size - 65536)
            s = time.perf_counter()
            f.seek(offset)
            assert len(f.read(65536)) == 65536
            times.append(time.perf_counter() - s)
    out["read_s"] = times
out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _start_sim(latency_ms: int, bandwidth: int) -> tuple[subprocess.Popen[str], str]:
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mastfs",
            "sim",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            "--bandwidth",
            str(bandwidth),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    url = sim.stdout.readline().strip()
    if not url.startswith("http://"):
        sim.kill()
        raise SystemExit(f"the simulator did not start: {url!r}")
    return sim, url


def _post(url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as r:
        return json.loads(r.read() or b"{}")


def _fetched(server: str) -> tuple[int, int]:
    with urllib.request.urlopen(server + "/__sim/stats", timeout=30) as r:
        stats = json.loads(r.read())["files"].get(PRODUCT, {})
    return int(stats.get("bytes", 0)), int(stats.get("requests", 0))


def _run(mode: str, url: str, server: str, reads: int, cache: str) -> dict[str, Any]:
    _post(server + "/__sim/stats/reset")
    env = {**os.environ, "MASTFS_SERVER": server, "XDG_CACHE_HOME": cache}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, url, str(reads)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} {url}: {done.stderr.strip().splitlines()[-1]}")
    out: dict[str, Any] = json.loads(done.stdout)
    out["fetched"], out["requests"] = _fetched(server)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency-ms", type=int, default=80)
    p.add_argument("--bandwidth", type=int, default=25_000_000)
    p.add_argument("--reads", type=int, default=200)
    p.add_argument("--runs", type=int, default=2, help="runs of each; medians are shown")
    args = p.parse_args()
    sim, server = _start_sim(args.latency_ms, args.bandwidth)
    ways = {
        "mast://": "mast://" + PRODUCT.removeprefix("mast:"),
        "https URL + use_fsspec": f"{server}/api/v0.1/Download/file?uri={PRODUCT}",
    }
    rows: list[tuple[str, str, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mastfs-fsspec-bench-") as tmp:
            for mode in ("getheader", "section", "random"):
                results: dict[str, list[dict[str, Any]]] = {way: [] for way in ways}
                for run in range(args.runs):
                    for way, url in ways.items():
                        cache = str(Path(tmp) / f"{mode}-{run}-{len(results[way])}-{way[:4]}")
                        results[way].append(_run(mode, url, server, args.reads, cache))
                for way, got in results.items():
                    if mode == "random":
                        p50 = statistics.median(x for r in got for x in r["read_s"]) * 1000
                    else:
                        p50 = float("nan")
                    rows.append(
                        (
                            mode,
                            way,
                            statistics.median(r["seconds"] for r in got) * 1000,
                            statistics.median(r["fetched"] for r in got) / MiB,
                            p50,
                        )
                    )
            warm = str(Path(tmp) / "warm")
            _run("getheader", ways["mast://"], server, args.reads, warm)
            again = _run("getheader", ways["mast://"], server, args.reads, warm)
            rows.append(
                (
                    "getheader, warm cache, new process",
                    "mast://",
                    again["seconds"] * 1000,
                    again["fetched"] / MiB,
                    float("nan"),
                )
            )
    finally:
        sim.kill()
        sim.wait()
    print(
        f"latency {args.latency_ms} ms per request, {args.bandwidth / 1e6:g} MB/s per "
        f"connection, medians of {args.runs} runs, fresh process and cache each"
    )
    print("| access | way | time (ms) | fetched (MiB) | p50 per read (ms) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for mode, way, ms, mib, p50 in rows:
        cell = "" if p50 != p50 else f"{p50:.0f}"
        print(f"| {mode} | {way} | {ms:.0f} | {mib:.1f} | {cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
