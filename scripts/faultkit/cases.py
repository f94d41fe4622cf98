"""The matrix's cases, declared as data: the scripts/fault-matrix table and
tests/mount/test_fault_matrix.py are both made from `CASES`.

A case is a `kind` of scenario (how the engine runs it, `scenarios.py`), the simulator knobs it
sets, the readers it runs with, and what a correct outcome allows: every case must show 0
corrupt bytes and recover; `errors_ok` cases may answer EIO (the product changed under an open
file, the daemon was killed, a stall outlasted `--timeout`) where the others must not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import MiB

SEQ = "seq"
RANDOM = "random"
READERS = (SEQ, RANDOM)

# Kinds of scenario (scenarios.py runs each).
KNOB = "knob"  # faults on, read, faults off, read again on the same mount
CHANGE_BEFORE = "change-before"
CHANGE_BETWEEN = "change-between"
CHANGE_DURING = "change-during"
KILL_READ = "kill-read"
KILL_WRITE = "kill-write"
FULL_DISK = "full-disk"
BIT_ROT = "bit-rot"
TWO_MOUNTS = "two-mounts"
CONCURRENT = "concurrent"
SKIPPED = "skipped"

# Knobs that only shape another knob's fault (its status, its reach, how often it fires) or name
# an alternative form of one: no case of their own.
MODIFIERS = frozenset(
    {
        "error_status",
        "error_downloads_only",
        "scope",
        "max_faults",
        "stall_after",
        "reset_fraction",
        "encoded_length",
        "burst_length",
        "retry_after",
    }
)
# Knobs that never touch a read of the matrix: the Portal query happens at mount time only;
# exclusive-access and `/url/` products are not what the matrix reads; the CRDS host serves
# `references/` only (tests/mount/test_references.py).
NOT_FOR_READS = frozenset(
    {
        "executing_polls",
        "api_latency_ms",
        "product_ms_per_row",
        "products_max_obs",
        "products_max_rows",
        "tess_ffi",
        "auth_401_only",
        "url_redirect",
        "redirect_ignores_range",
        "crds_unavailable",
    }
)

STALL_FACTOR = 3.0  # a stall lasts this many --timeouts
CONCURRENT_READERS = 16


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    what: str
    knobs: dict[str, Any] = field(default_factory=dict)
    readers: tuple[str, ...] = READERS
    errors_ok: bool = False
    needs_root: bool = False

    def knobs_for(self, timeout: float) -> dict[str, Any]:
        """The knobs with the stall's length made from `--timeout`."""
        knobs = dict(self.knobs)
        if "stall_seconds" in knobs:
            knobs["stall_seconds"] = STALL_FACTOR * timeout
        return knobs


@dataclass(frozen=True)
class Sizes:
    """How big a run is: the products read (by size), random reads, the small disk."""

    min_product: int
    max_product: int
    random_reads: int
    disk_mib: int


# scripts/fault-matrix: products of tens of MiB; the tests: of about 12 MiB.
SCRIPT_SIZES = Sizes(min_product=30 * MiB, max_product=40 * MiB, random_reads=200, disk_mib=20)
TEST_SIZES = Sizes(min_product=12 * MiB, max_product=13 * MiB, random_reads=24, disk_mib=8)

CASES: tuple[Case, ...] = (
    Case("5xx", KNOB, "30 % of requests answered 503", {"error_rate": 0.3, "error_status": 503}),
    Case(
        "reset",
        KNOB,
        "connections reset after 300 kB of a body (8 times)",
        {"reset_after": 300_000, "max_faults": 8},
    ),
    Case(
        "stall",
        KNOB,
        "a body stalls after 64 KiB for 3 × --timeout (once)",
        {"stall_after": 65536, "stall_seconds": 0.0, "max_faults": 1},
        errors_ok=True,
    ),
    Case("ignore-range", KNOB, "Range ignored: 200 and the whole body", {"ignore_range": True}),
    Case("latency", KNOB, "300 ms before every answer", {"latency_ms": 300}),
    Case("bandwidth", KNOB, "bodies capped at 4 MiB/s per connection", {"bandwidth": 4 * MiB}),
    # The lying archive of issue 12: bodies that are not what their headers say.
    Case(
        "short-body",
        KNOB,
        "bodies end 1000 bytes before their Content-Length (3 times)",
        {"short_body": 1000, "max_faults": 3},
    ),
    Case(
        "long-body",
        KNOB,
        "bodies run 1000 bytes past their Content-Length (3 times)",
        {"long_body": 1000, "max_faults": 3},
    ),
    Case("chunked", KNOB, "bodies sent chunked, without Content-Length", {"framing": "chunked"}),
    Case(
        "gzip",
        KNOB,
        "bodies gzip-coded under the stored size's Content-Length (4 times)",
        {"content_encoding": "gzip", "encoded_length": False, "max_faults": 4},
        errors_ok=True,
    ),
    Case(
        "wrong-length",
        KNOB,
        "a Content-Length 1000 bytes short of the range (4 times)",
        {"wrong_length": -1000, "max_faults": 4},
        errors_ok=True,
    ),
    # The real archive's manners (issue 14) that reads meet; one reader each (test time).
    Case(
        "generated",
        KNOB,
        "downloads as generated files come: no ETag (Last-Modified only), no Content-Length",
        {"no_etag": "mast:", "no_length": "mast:"},
        readers=(SEQ,),
    ),
    Case(
        "503-bursts",
        KNOB,
        "the last 3 of every 12 requests answered 503 with Retry-After: 1",
        {"burst_every": 12, "burst_length": 3, "retry_after": 1},
        readers=(RANDOM,),
    ),
    Case(
        "executing-polls",
        SKIPPED,
        "Portal polls answered EXECUTING: only the query at mount time, never a read",
        readers=(),
    ),
    *(
        Case(name, SKIPPED, what, readers=())
        for name, what in (
            ("api-latency-ms", "API calls slowed: the query at mount time, never a read"),
            ("product-ms-per-row", "product lists take server time: mount time only"),
            ("products-max-obs", "product-list requests reset: mount time only"),
            ("products-max-rows", "product-list results reset: mount time only"),
            ("tess-ffi", "TESS FFIs in cone searches: mount time only"),
            ("auth-401-only", "401 for users without rights: the matrix reads public files"),
            ("url-redirect", "/url/ products redirected: the matrix reads JWST products"),
            ("redirect-ignores-range", "the second host ignores Range: /url/ products only"),
            ("crds-unavailable", "the CRDS host answers 503: references/ only, not products"),
        )
    ),
    Case(
        "change-before",
        CHANGE_BEFORE,
        "product replaced after a first read, before the next open",
        errors_ok=False,
    ),
    Case(
        "change-between",
        CHANGE_BETWEEN,
        "product replaced between two reads of one open file",
        errors_ok=True,
    ),
    Case(
        "change-during",
        CHANGE_DURING,
        "product replaced while a read is in flight (300 ms latency)",
        errors_ok=True,
    ),
    Case(
        "kill9-read",
        KILL_READ,
        "daemon SIGKILLed while a read waits (300 ms latency), remount",
        readers=(SEQ,),
        errors_ok=True,
    ),
    Case(
        "kill9-write",
        KILL_WRITE,
        "daemon SIGKILLed while it writes blocks, remount",
        readers=(SEQ,),
        errors_ok=True,
    ),
    Case(
        "full-disk",
        FULL_DISK,
        "the cache on a tmpfs smaller than the product",
        needs_root=True,
    ),
    Case("bit-rot", BIT_ROT, "bytes flipped in the cache's run files between two mounts"),
    Case("two-mounts", TWO_MOUNTS, "two mounts over one cache directory, reading at once"),
    Case(
        "16-readers",
        CONCURRENT,
        f"{CONCURRENT_READERS} readers at once, 30 % of requests 503",
        {"error_rate": 0.3, "error_status": 503},
    ),
)


def by_name(names: str | None) -> list[Case]:
    """The cases named in a comma-separated list (all for None); KeyError names the unknown."""
    if not names:
        return list(CASES)
    known = {case.name: case for case in CASES}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise KeyError(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in wanted]
