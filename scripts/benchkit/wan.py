"""`scripts/bench --wan`: mastfs and its references over a modelled wide-area link (issue 14).

The run makes a network namespace of its own (`ip netns`, loopback only) and runs itself again
inside it, so the simulator, every mount and every client meet only there. These kernels have
no netem, so the simulator's "mast" profile stands for the internet (docs/simulator.md), with
its knobs `--latency-ms` (a sleep before each answer: one round trip per request) and
`--bandwidth` (bytes/s per connection) as given here. Sections:

  seq       cold `dd` of the 1 GiB product, capped link: aria2c -x16 -s16, curl, astroquery's
            download_file, rclone and httpdirfs (single-stream tools read a 256 MiB prefix,
            or a smaller product: at 25 MB/s a GiB takes 43 s each)
  nocap     the same with no bandwidth cap, latency kept: aria2c, rclone, curl on the 1 GiB
  header    fits.getheader and fits.open + .section of the 4.3 GiB product, fresh mount,
            against astropy with fsspec on the download URL (`use_fsspec=True`)
  random    200 seeded 64 KiB preads of the 4.3 GiB product, fresh mount: p50 against one raw
            range GET per read (one keep-alive connection) and fsspec
  small     `cat` of the files under 1 MB of program 2734, fresh mount, against one curl with
            every URL (keep-alive)
  mount     mount to ready of programs 2734 and 1999 against astroquery (sections/mount_time.py)

The table goes between the `bench-wan` markers of docs/performance.md (a full run) and raw
numbers to bench-out/bench-wan.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli import report
from .common import LAUNCHER, PROGRAM, PY, BenchError, GiB, MiB
from .compare import lookup
from .mounts import fuse_process, mastfs
from .peers import astroquery_download
from .procs import run, run_helper, tail
from .reads import dd
from .session import Session
from .sim import rel_path
from .table import Row, secs

NETNS_ENV = "MASTFS_BENCH_NETNS"
WAN_SECTIONS = ("seq", "nocap", "header", "random", "small", "mount")
BEGIN = "<!-- bench-wan:begin (scripts/bench --wan writes between these markers) -->"
END = "<!-- bench-wan:end -->"
RUNS = 2  # mastfs and aria2c cold reads per link; medians
PREFIX_MIB = 256  # what single-stream references read of the 1 GiB product
RANDOM_N = 200
RANDOM_SEED = 14
SMALL_MAX = 1_000_000  # "small files": under 1 MB
ASTROQUERY_MIN = 20 * MiB  # astroquery downloads a whole product: one of 20-300 MiB
ASTROQUERY_MAX = 300 * MiB


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("wide-area link (--wan)")
    g.add_argument("--wan", action="store_true", help="the WAN benchmark (own network namespace)")
    g.add_argument("--latency-ms", type=float, default=80.0, help="per request (default 80)")
    g.add_argument(
        "--bandwidth", type=int, default=25_000_000, help="bytes/s per connection (25000000)"
    )


def main(args: argparse.Namespace) -> int:
    chosen = WAN_SECTIONS
    if args.only:
        chosen = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = [s for s in chosen if s not in WAN_SECTIONS]
        if unknown:
            print(f"bench: unknown --wan section(s) {', '.join(unknown)}; choose from "
                  f"{', '.join(WAN_SECTIONS)}", file=sys.stderr)  # fmt: skip
            return 2
    if os.environ.get(NETNS_ENV):
        return _inside(args, chosen)
    return _in_namespace(sys.argv[1:])


def _in_namespace(argv: list[str]) -> int:
    """Make the namespace, run this command again inside it, remove the namespace."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        print("bench: --wan needs root and `ip` (iproute2) for its network namespace",
              file=sys.stderr)  # fmt: skip
        return 2
    name = f"mastfs-wan-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        print(f"bench: ip netns add {name}: {made.stderr.strip()}", file=sys.stderr)
        return 2
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, **{NETNS_ENV: name})
        return subprocess.run(
            ["ip", "netns", "exec", name, PY, str(LAUNCHER), *argv], env=env
        ).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _inside(args: argparse.Namespace, chosen: tuple[str, ...]) -> int:
    started = datetime.datetime.now(datetime.UTC)
    load_start = os.getloadavg()
    link = ["--profile", "mast", "--latency-ms", f"{args.latency_ms:g}"]
    link += ["--bandwidth", str(args.bandwidth)]
    session = Session(args.tmp, sim_args=link)
    session.say(
        f"namespace {os.environ[NETNS_ENV]}; simulator {session.sim.url}: "
        f"{args.latency_ms:g} ms per request, {args.bandwidth / 1e6:g} MB/s per connection"
    )
    results: dict[str, Any] = {"link": {"latency_ms": args.latency_ms, "bandwidth": args.bandwidth}}
    try:
        for name in chosen:
            session.say(f"{name}: start")
            out: dict[str, Any] = {}
            t = time.monotonic()
            try:
                SECTIONS[name](session, out, args)
            except Exception as exc:  # one failed section must not lose the others
                out["error"] = f"{type(exc).__name__}: {exc}"
                session.say(f"{name}: FAILED: {exc}")
            out["section_seconds"] = time.monotonic() - t
            results[name] = out
    finally:
        session.close()
    command = "scripts/bench --wan" + (f" --only {args.only}" if args.only else "")
    link_note = (
        f'Link: the simulator\'s "mast" profile (docs/simulator.md: 500 ms API calls, no '
        f"ETag, `/url/` products elsewhere) with `latency_ms={args.latency_ms:g}` and "
        f"`bandwidth={args.bandwidth}` (per connection), in a network namespace of the "
        "benchmark's own (no netem on these kernels)."
    )
    notes = [link_note, *session.notes]
    start = (started, load_start)
    report(args, "bench-wan", command, session, start, results, build_rows(results), notes,
           (BEGIN, END))  # fmt: skip
    return 0


# -- measurements ------------------------------------------------------------------------------


def _cold_mastfs(session: Session, rel: str, size: int, count_mib: int | None = None) -> dict:
    """One cold mastfs read (fresh cache, fresh mount): GB/s, requests, the readahead shape."""
    cache = session.fresh("cache")
    try:
        session.cold()
        with mastfs(session, PROGRAM, cache) as m:
            session.sim.reset()
            with session.cpu(m.pid) as cpu:
                got = dd(m.path / rel, size, count_mib=count_mib, timeout=600)
            stats = _cache_stats(m.path)
            return {
                "gbps": got.gbps,
                "requests": session.sim.file_requests(),
                "fetched": session.sim.file_bytes(),
                "daemon_cpu_s": cpu.daemon,
                "shape": {k: stats.get(k) for k in ("readahead_parallel",
                          "readahead_request_bytes", "link_rtt_us", "link_rate_bps")},
            }  # fmt: skip
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _cache_stats(mnt: Path) -> dict[str, Any]:
    done = run(["getfattr", "--only-values", "-n", "user.mastfs.cache", str(mnt)], timeout=30)
    try:
        stats: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {}
    return stats


def _aria2c(session: Session, uri: str, size: int) -> float:
    if shutil.which("aria2c") is None:
        raise BenchError("aria2c not installed (apt-get install aria2)")
    where = session.fresh("aria2c")
    t = time.perf_counter()
    done = run(["aria2c", "-q", "-x16", "-s16", "-k1M", "--file-allocation=none",
                "--allow-overwrite=true", "-d", str(where), "-o", "out",
                session.sim.download_url(uri)], timeout=600)  # fmt: skip
    seconds = time.perf_counter() - t
    got = (where / "out").stat().st_size if (where / "out").exists() else 0
    shutil.rmtree(where, ignore_errors=True)
    if done.returncode != 0 or got != size:
        raise BenchError(f"aria2c got {got} bytes: {tail(done.stdout + done.stderr)}")
    return size / seconds / 1e9


def _curl(session: Session, uri: str, nbytes: int) -> float:
    done = run(["curl", "-sf", "-o", "/dev/null", "-r", f"0-{nbytes - 1}",
                "-w", "%{size_download} %{time_total}", session.sim.download_url(uri)],
               timeout=600)  # fmt: skip
    got, seconds = [*done.stdout.split(), "0", "1"][:2]
    if int(float(got)) != nbytes:
        raise BenchError(f"curl got {got} of {nbytes} bytes: {tail(done.stderr)}")
    return nbytes / float(seconds) / 1e9


def _peer_fs(session: Session, name: str, rel: str, nbytes: int) -> float:
    """rclone or httpdirfs (own cache), cold, `dd` of the first `nbytes` of the product."""
    if shutil.which(name) is None:
        raise BenchError(f"{name} not installed")
    mnt, cache = session.fresh(name), session.fresh(f"{name}-cache")
    url = f"{session.sim.url}/files/"
    argv = (
        ["rclone", "mount", ":http:", str(mnt), "--http-url", url, "--vfs-cache-mode", "full",
         "--cache-dir", str(cache), "--config", "", "--read-only"]
        if name == "rclone"
        else ["httpdirfs", "-f", "--cache", "--cache-location", str(cache), url, str(mnt)]
    )  # fmt: skip
    try:
        session.cold()
        with fuse_process(session, argv, mnt, mnt / rel):
            return dd(mnt / rel, nbytes, count_mib=nbytes // MiB, timeout=600).gbps
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _attempt(out: dict[str, Any], key: str, fn: Callable[[], Any], session: Session) -> None:
    """out[key] = fn(), or out[key + "_error"] with why not (a reference may be missing)."""
    try:
        out[key] = fn()
        session.say(f"  {key}: {out[key]}")
    except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
        out[key + "_error"] = str(exc)
        session.say(f"  {key}: failed: {exc}")


def _seq_links(session: Session, out: dict[str, Any], single_streams: bool) -> None:
    uri, size = session.one_gib, GiB
    rel = rel_path(uri)
    runs, arias = [], []
    for i in range(RUNS):  # interleaved: the machine's load drifts into both sides alike
        runs.append(_cold_mastfs(session, rel, size))
        session.say(
            f"  mastfs cold {i + 1}/{RUNS}: {runs[-1]['gbps']:.3f} GB/s {runs[-1]['shape']}"
        )
        _attempt(out, f"aria2c_{i}", lambda: _aria2c(session, uri, size), session)
        if f"aria2c_{i}" in out:
            arias.append(out.pop(f"aria2c_{i}"))
    out["mastfs_runs"] = runs
    out["mastfs_gbps"] = statistics.median(r["gbps"] for r in runs)
    if arias:
        out["aria2c_gbps"] = statistics.median(arias)
    part = PREFIX_MIB * MiB if single_streams else size
    out["prefix_bytes"] = part
    _attempt(out, "curl_gbps", lambda: _curl(session, uri, part), session)
    _attempt(out, "rclone_gbps", lambda: _peer_fs(session, "rclone", rel, part), session)
    if single_streams:
        _attempt(out, "httpdirfs_gbps", lambda: _peer_fs(session, "httpdirfs", rel, part), session)
        _attempt(out, "astroquery", lambda: _astroquery(session), session)


def _astroquery(session: Session) -> dict[str, Any]:
    uri, size = _product_between(session, ASTROQUERY_MIN, ASTROQUERY_MAX)
    got = astroquery_download(session, uri, uri.rsplit("/", 1)[-1])
    if got.get("bytes") != size:
        raise BenchError(f"astroquery got {got.get('bytes')} of {size} bytes")
    return {"uri": uri, "bytes": size, "gbps": size / got["seconds"] / 1e9}


def _product_between(session: Session, low: int, high: int) -> tuple[str, int]:
    from mastfs.sim.catalog import default_catalog  # the catalog the simulator serves

    files = sorted(
        (f.size, f.uri)
        for f in default_catalog().files()
        if str(f.proposal_id) == PROGRAM and low <= f.size <= high and f.dataRights == "PUBLIC"
    )
    if not files:
        raise BenchError(f"no public product of {low}-{high} bytes in program {PROGRAM}")
    size, uri = files[0]
    return uri, size


def seq(session: Session, out: dict[str, Any], args: argparse.Namespace) -> None:
    _seq_links(session, out, single_streams=True)


def nocap(session: Session, out: dict[str, Any], args: argparse.Namespace) -> None:
    session.sim.faults(bandwidth=0)
    try:
        _seq_links(session, out, single_streams=False)
    finally:
        session.sim.faults(bandwidth=args.bandwidth)


def header(session: Session, out: dict[str, Any], args: argparse.Namespace) -> None:
    rel = rel_path(session.big)
    url = session.sim.download_url(session.big)
    _curl(session, session.big, 16 * MiB)  # the simulator makes the bytes: untimed, once
    for mode in ("getheader", "section"):
        cache = session.fresh("cache")
        try:
            with mastfs(session, PROGRAM, cache) as m:
                session.sim.reset()
                got = run_helper(mode, str(m.path / rel), timeout=300)
                out[f"mastfs_{mode}_s"] = got["seconds"]
                out[f"mastfs_{mode}_fetched"] = session.sim.file_bytes()
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        session.sim.reset()
        got = run_helper(f"fsspec-{mode}", url, timeout=300)
        out[f"fsspec_{mode}_s"] = got["seconds"]
        out[f"fsspec_{mode}_fetched"] = session.sim.file_bytes()
        session.say(f"  {mode}: mastfs {out[f'mastfs_{mode}_s']:.3f} s, "
                    f"fsspec {out[f'fsspec_{mode}_s']:.3f} s")  # fmt: skip


def random_reads(session: Session, out: dict[str, Any], args: argparse.Namespace) -> None:
    rng = random.Random(RANDOM_SEED)
    offsets = [rng.randrange(0, session.big_size - 64 * 1024) for _ in range(RANDOM_N)]
    path = session.tmp / "wan-offsets.json"
    path.write_text(json.dumps(offsets))
    cache = session.fresh("cache")
    try:
        with mastfs(session, PROGRAM, cache) as m:
            session.sim.reset()
            got = run_helper("pread", str(m.path / rel_path(session.big)), str(path), "1",
                             timeout=600)  # fmt: skip
            out["mastfs_p50_s"] = statistics.median(got["passes"][0])
            out["mastfs_requests"] = session.sim.file_requests()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    url = session.sim.download_url(session.big)
    got = run_helper("http", url, str(path), timeout=600)
    out["http_p50_s"] = statistics.median(got["passes"][0])
    session.sim.reset()
    got = run_helper("fsspec-pread", url, str(path), timeout=600)
    out["fsspec_p50_s"] = statistics.median(got["passes"][0])
    out["fsspec_requests"] = session.sim.file_requests()
    p50 = {k: out[f"{k}_p50_s"] * 1e3 for k in ("mastfs", "http", "fsspec")}
    session.say(f"  p50 mastfs {p50['mastfs']:.1f} ms, one range GET {p50['http']:.1f} ms, "
                f"fsspec {p50['fsspec']:.1f} ms")  # fmt: skip


def small(session: Session, out: dict[str, Any], args: argparse.Namespace) -> None:
    cache = session.fresh("cache")
    try:
        with mastfs(session, PROGRAM, cache) as m:
            inodes: dict[int, Path] = {}  # a product linked from several datasets: once
            for p in sorted(m.path.rglob("*")):
                if p.is_file() and p.parent != m.path and p.stat().st_size < SMALL_MAX:
                    inodes.setdefault(p.stat().st_ino, p)
            files = list(inodes.values())
            uris = [os.getxattr(p, "user.mast.uri").decode() for p in files]
            out["files"], out["bytes"] = len(files), sum(p.stat().st_size for p in files)
            # The simulator makes a file's bytes on its first request: once, untimed, so that
            # neither side pays for it.
            _curl_all(session, uris)
            session.cold()
            session.sim.reset()
            t = time.perf_counter()
            done = subprocess.run(
                ["timeout", "-k", "5", "600", "cat", *map(str, files)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            out["mastfs_s"] = time.perf_counter() - t
            if done.returncode != 0:
                raise BenchError(f"cat: {tail(done.stderr)}")
            out["mastfs_requests"] = session.sim.file_requests()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out["curl_s"] = _curl_all(session, uris)
    session.say(f"  {len(files)} files: mastfs {out['mastfs_s']:.2f} s, curl {out['curl_s']:.2f} s")


def _curl_all(session: Session, uris: list[str]) -> float:
    """One curl fetching every URI in turn over one kept-alive connection: seconds."""
    cmd = ["curl", "-sf"]
    for uri in uris:
        cmd += ["-o", "/dev/null", session.sim.download_url(uri)]
    t = time.perf_counter()
    done = run(cmd, timeout=600)
    if done.returncode != 0:
        raise BenchError(f"curl: {tail(done.stderr)}")
    return time.perf_counter() - t


def mount(session: Session, out: dict[str, Any], args: argparse.Namespace) -> None:
    from .sections import mount_time

    result = mount_time.MountTimeResult()
    try:
        mount_time.measure(session, result)
    finally:
        out.update(result.to_json())


SECTIONS: dict[str, Callable[[Session, dict[str, Any], argparse.Namespace], None]] = {
    "seq": seq,
    "nocap": nocap,
    "header": header,
    "random": random_reads,
    "small": small,
    "mount": mount,
}
assert tuple(SECTIONS) == WAN_SECTIONS


# -- the table -----------------------------------------------------------------------------------


def _throughput(label: str, mine: float | None, ref_name: str, ref: float | None,
                goal: float | None = None) -> Row:  # fmt: skip
    ratio = mine / ref if mine and ref else None
    met = None if goal is None or ratio is None else ratio >= goal
    goal_text = f"≥ {goal:g}×" if goal is not None else "–"
    return Row(label, _mbps(mine), f"{ref_name}: {_mbps(ref)}", ratio, goal=goal_text, met=met)


def _mbps(gbps: float | None) -> str:
    return "–" if gbps is None else f"{gbps * 1000:.0f} MB/s"


def _timed(label: str, mine: float | None, ref_name: str, ref: float | None,
           goal: float | None = None) -> Row:  # fmt: skip
    ratio = ref / mine if mine and ref else None
    met = None if goal is None or ratio is None else ratio >= goal
    goal_text = f"≥ {goal:g}× (ref/mastfs)" if goal is not None else "–"
    return Row(label, secs(mine), f"{ref_name}: {secs(ref)}", ratio,
               f"{ratio:.2f}× (ref/mastfs)" if ratio else "", goal_text, met)  # fmt: skip


def build_rows(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    bw = (lookup(r, ("link", "bandwidth")) or 0) / 1e6
    for key, what in (("seq", f"{bw:g} MB/s per connection"), ("nocap", "no bandwidth cap")):
        if key not in r:
            continue
        s = r[key]
        label = f"cold dd of the 1 GiB product, {what}"
        mine = s.get("mastfs_gbps")
        runs = s.get("mastfs_runs") or [{}]
        shape = runs[-1].get("shape") or {}
        if shape.get("readahead_parallel"):
            label += (f" (mastfs: {shape['readahead_parallel']} × "
                      f"{shape['readahead_request_bytes'] // MiB} MiB ranges)")  # fmt: skip
        rows.append(_throughput(label, mine, "aria2c -x16 -s16", s.get("aria2c_gbps"),
                                0.8 if key == "seq" else None))  # fmt: skip
        prefix = s.get("prefix_bytes") or GiB
        part = "" if prefix == GiB else f" (first {prefix // MiB} MiB)"
        rows.append(_throughput(label, mine, f"rclone --vfs-cache-mode full{part}",
                                s.get("rclone_gbps"), 1.2 if key == "nocap" else None))  # fmt: skip
        rows.append(_throughput(label, mine, f"curl{part}", s.get("curl_gbps")))
        if "httpdirfs_gbps" in s or "httpdirfs_gbps_error" in s:
            rows.append(_throughput(label, mine, f"httpdirfs --cache{part}",
                                    s.get("httpdirfs_gbps")))  # fmt: skip
        aq = s.get("astroquery")
        if aq or "astroquery_error" in s:
            name = "astroquery download_file"
            if aq:
                name += f" ({aq['bytes'] / MiB:.0f} MiB product)"
            rows.append(_throughput(label, mine, name, aq.get("gbps") if aq else None))
    h = r.get("header")
    if h:
        for mode, what in (("getheader", "fits.getheader"), ("section", "fits.open + .section")):
            mine, ref = h.get(f"mastfs_{mode}_s"), h.get(f"fsspec_{mode}_s")
            fetched = h.get(f"mastfs_{mode}_fetched")
            ref_fetched = h.get(f"fsspec_{mode}_fetched")
            label = f"{what}, 4.3 GiB product, fresh mount"
            if fetched is not None and ref_fetched is not None:
                label += f" ({fetched / MiB:.1f} MiB fetched; fsspec {ref_fetched / MiB:.1f} MiB)"
            rows.append(_timed(label, mine, "astropy use_fsspec=True", ref))
    q = r.get("random")
    if q:
        label = f"{RANDOM_N} random 64 KiB reads, cold, p50"
        rows.append(_timed(label, q.get("mastfs_p50_s"), "one 64 KiB range GET per read",
                           q.get("http_p50_s")))  # fmt: skip
        per_read = (q["mastfs_requests"] / RANDOM_N) if q.get("mastfs_requests") else None
        rows.append(Row(f"{RANDOM_N} random 64 KiB reads, cold: requests per read",
                        "–" if per_read is None else f"{per_read:.2f}",
                        "one range GET per read: 1", per_read, goal="≤ 1 (one round trip)",
                        met=None if per_read is None else per_read <= 1))  # fmt: skip
        rows.append(_timed(label, q.get("mastfs_p50_s"), "fsspec", q.get("fsspec_p50_s")))
    m = r.get("small")
    if m and "files" in m:
        label = f"cat of the {m.get('files')} files < 1 MB of {PROGRAM}"
        rows.append(_timed(label, m.get("mastfs_s"), "one curl, all URLs (keep-alive)",
                           m.get("curl_s")))  # fmt: skip
    for program, times in (lookup(r, ("mount", "programs")) or {}).items():
        rows.append(_timed(f"program {program}: mount → ready", times.get("mastfs_s"),
                           "astroquery query_criteria + get_product_list, fresh process",
                           times.get("astroquery_s"), 1.0))  # fmt: skip
    for key in WAN_SECTIONS:
        error = lookup(r, (key, "error"))
        if error:
            rows.append(Row(f"{key}: not measured", "–", error[:200]))
    return rows
