"""Section scaleout (docs/scale-out.md): N nodes through an nginx site cache tier against N nodes
reading the archive directly, and the cloud source against the archive.

The archive is slowed with the simulator's `latency_ms` and `bandwidth` knobs (per answer), a
stand-in for a WAN archive; the bucket of `--source cloud` is the same simulator under the same
knobs. Every node is its own mount with its own cache, reading the same products at once.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass

from mastfs.sim.catalog import default_catalog

from ..common import PROGRAM, BenchError, MiB
from ..mounts import Mounted, mastfs
from ..procs import concurrently
from ..results import Result
from ..session import Session
from ..sim import rel_path
from ..tier import nginx_unavailable, running_tier

NODES = 3
LATENCY_MS = 20
BANDWIDTH = 25_000_000  # bytes/s per answer
# Program 2734's level-2 cal products: ~12 MiB each, several blocks and tier slices.
PRODUCTS = tuple(
    f"mast:JWST/product/jw02734001001_02101_00001-seg00{seg}_nis_cal.fits" for seg in range(1, 6)
)


@dataclass
class ScaleoutResult(Result):
    nodes: int | None = None
    read_mib: float | None = None  # per node
    direct_gbps: float | None = None  # aggregate over the nodes
    direct_origin_mib: float | None = None
    tier_gbps: float | None = None
    tier_origin_mib: float | None = None
    mast_gbps: float | None = None  # one node, cold
    cloud_gbps: float | None = None
    cloud_origin_mib: float | None = None  # from the archive itself with --source cloud


def _faults(session: Session, knobs: dict[str, int]) -> None:
    request = urllib.request.Request(
        f"{session.sim.url}/__sim/faults",
        data=json.dumps(knobs).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _archive_mib(session: Session) -> float:
    """MiB the archive's own downloads sent (the bucket's objects are counted apart)."""
    files = session.sim.stats()["files"]
    return sum(c["bytes"] for uri, c in files.items() if uri.startswith("mast:")) / MiB


def _read_all(nodes: list[Mounted], digests: dict[str, str]) -> float:
    """Every node reads every product at once (sha256sum, in order); the wall seconds. Each
    product's digest must be the archive's."""
    cmds = [["sha256sum", *(str(n.path / rel_path(uri)) for uri in PRODUCTS)] for n in nodes]
    wall, outs, errs = concurrently(cmds)
    for out, err in zip(outs, errs, strict=True):
        got = [line.split()[0] for line in out.splitlines()]
        if got != [digests[uri] for uri in PRODUCTS]:
            raise BenchError(f"wrong bytes read: {got} {err.strip()[:200]}")
    return wall


def _nodes(session: Session, stack: ExitStack, n: int, extra: list[str]) -> list[Mounted]:
    """`n` mounts, each with a cache of its own; then the archive is slowed (mounting is not
    what is measured) and its counters zeroed."""
    nodes = [
        stack.enter_context(mastfs(session, PROGRAM, session.fresh("cache"), extra=extra))
        for _ in range(n)
    ]
    _faults(session, {"latency_ms": LATENCY_MS, "bandwidth": BANDWIDTH})
    stack.callback(_faults, session, {"latency_ms": 0, "bandwidth": 0})
    session.sim.reset()
    session.cold()
    return nodes


def measure(session: Session, r: ScaleoutResult) -> None:
    why = nginx_unavailable()
    if why is not None:
        raise BenchError(why)
    catalog = default_catalog()
    files = [f for uri in PRODUCTS if (f := catalog.file(uri)) is not None]
    if len(files) != len(PRODUCTS):
        raise BenchError("a product of the section is not in the catalog")
    digests = {f.uri: hashlib.sha256(f.read(0, f.size)).hexdigest() for f in files}
    per_node = sum(f.size for f in files)
    r.nodes, r.read_mib = NODES, per_node / MiB
    with ExitStack() as stack:
        nodes = _nodes(session, stack, NODES, [])
        wall = _read_all(nodes, digests)
        r.direct_gbps = per_node * NODES / wall / 1e9
        r.direct_origin_mib = _archive_mib(session)
    session.say(f"scaleout: {NODES} nodes direct {r.direct_gbps:.3f} GB/s")
    with ExitStack() as stack:
        tier = stack.enter_context(running_tier(session.sim.url, session.fresh("tier")))
        nodes = _nodes(session, stack, NODES, ["--data-cache", tier.url])
        wall = _read_all(nodes, digests)
        r.tier_gbps = per_node * NODES / wall / 1e9
        r.tier_origin_mib = _archive_mib(session)
    session.say(f"scaleout: {NODES} nodes via nginx {r.tier_gbps:.3f} GB/s")
    for source in ("mast", "cloud"):
        extra = ["--source", source, "--cloud-url", f"{session.sim.url}/stpubdata"]
        with ExitStack() as stack:
            nodes = _nodes(session, stack, 1, extra)
            gbps = per_node / _read_all(nodes, digests) / 1e9
        if source == "mast":
            r.mast_gbps = gbps
        else:
            r.cloud_gbps, r.cloud_origin_mib = gbps, _archive_mib(session)
    session.say(f"scaleout: one node, mast {r.mast_gbps:.3f} GB/s, cloud {r.cloud_gbps:.3f}")
