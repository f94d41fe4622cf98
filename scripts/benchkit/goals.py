"""The table's rows and the goals of issue 5 (and peers.md), declared as data.

Each row names what it compares (key paths into the results), the reference and the goal; the
kinds of comparison are in compare.py. Rows appear in this order; a section that did not run
or failed shows as its one `missing` row.
"""

from __future__ import annotations

from .common import PARALLEL_MIB, PARALLEL_READERS, RANDOM_READS, RANDOM_SIZE
from .compare import (
    CpuPerRun,
    Faster,
    FetchedPerRead,
    FetchedShare,
    Goal,
    Group,
    Latency,
    MibRate,
    OriginShare,
    Overfetch,
    PeakRss,
    Results,
    Throughput,
    Timed,
    TimedPair,
    lookup,
)
from .table import Row

# -- the goals ---------------------------------------------------------------------------------

COLD_VS_NOOP = Goal("≥", 0.8, "×")  # cold sequential, against the no-op FUSE filesystem
COLD_VS_RCLONE = Goal("≥", 3, "×")
WARM_VS_PAGE_CACHE = Goal("≥", 0.8, "×")  # warm re-read, against a local file in the page cache
REMOUNT_VS_NOOP = Goal("≥", 0.8, "×")  # after a remount (disk cache), against no-op FUSE
HEADER_SHARE = Goal("≤", 0.5, " %")  # bytes fetched for a header, of the file's size
HEADER_FASTER = Goal("≥", 50, "× faster")  # than astroquery's download_file
ONE_BLOCK_PER_READ = Goal("≤", 1, " MiB", " (one block)")  # fetched per cold random read
RANDOM_AFTER_REMOUNT = Goal("≥", 200, " MiB/s", " (peers.md)")  # one reader, disk cache
LISTING = Goal("<", 0.5, " s")  # ls -lR of 10k products
MEMORY_STREAMING = Goal("<", 300, " MB", ", flat")  # daemon's peak RSS over 4.3 GiB
MEMORY_TREE = Goal("<", 300, " MB")  # daemon's peak RSS with the 10k-product tree
NO_SLOWER = Goal("≥", 1, "×")  # mount → ready against astroquery's own query, as a process
# Archive bytes with 3 nodes behind one tier, of 3 nodes reading directly: each byte ~once.
TIER_ORIGIN_SHARE = Goal("≤", 0.35, "×", " (each byte once)")

# -- the rows --------------------------------------------------------------------------------------

# (readahead in KiB as the results name it, as the cold rows say it, as the others say it)
_READAHEADS = ((1024, "1024 KiB", "1024 KiB"), (0, "128 KiB (kernel default)", "128 KiB"))
_PEERS = (("rclone", "rclone --vfs-cache-mode full"), ("httpdirfs", "httpdirfs --cache"))
_RA1024 = "1. cold sequential 1 GiB (readahead 1024)"


def _seq(*key: str) -> tuple[str, ...]:
    return ("seq", *key)


SEQ = Group(
    "seq",
    missing="1–2. sequential reads",
    rows=(
        *(
            Throughput(
                label=f"1. cold sequential 1 GiB, readahead {cold_name}",
                mine=_seq(f"mastfs_ra{ra}", "cold_gbps"),
                ref_name="no-op FUSE, same readahead",
                ref=_seq(f"noop_ra{ra}", "cold_gbps"),
                goal=COLD_VS_NOOP,
            )
            for ra, cold_name, _ in _READAHEADS
        ),
        Throughput(
            label=_RA1024,
            mine=_seq("mastfs_ra1024", "cold_gbps"),
            ref_name="curl (network limit)",
            ref=_seq("curl_gbps"),
        ),
        *(
            Throughput(
                label=_RA1024,
                mine=_seq("mastfs_ra1024", "cold_gbps"),
                ref_name=f"{label}, cold",
                ref=_seq(peer, "cold_gbps"),
                goal=COLD_VS_RCLONE if peer == "rclone" else None,
                peer=_seq(peer),
            )
            for peer, label in _PEERS
        ),
        CpuPerRun(
            label=f"{_RA1024}: CPU seconds of the FUSE process",
            runs=_seq("mastfs_ra1024", "runs"),
            ref_name="rclone",
            ref=_seq("rclone", "cold_cpu_s", "daemon"),
        ),
        *(
            Throughput(
                label=f"2. warm re-read, same mount, readahead {name}",
                mine=_seq(f"mastfs_ra{ra}", "warm_gbps"),
                ref_name="local file, page cache",
                ref=_seq("local_pagecache_gbps"),
                goal=WARM_VS_PAGE_CACHE,
            )
            for ra, _, name in _READAHEADS
        ),
        *(
            Throughput(
                label=f"2. warm re-read, same mount, readahead {name}",
                mine=_seq(f"mastfs_ra{ra}", "warm_gbps"),
                ref_name="no-op FUSE, warm re-read (FUSE page-cache ceiling)",
                ref=_seq(f"noop_ra{ra}", "warm_gbps"),
            )
            for ra, _, name in _READAHEADS
        ),
        *(
            Throughput(
                label=f"2. after remount{how}, ra {name}",
                mine=_seq(f"mastfs_ra{ra}", key),
                ref_name="no-op FUSE, same readahead",
                ref=_seq(f"noop_ra{ra}", "cold_gbps"),
                goal=REMOUNT_VS_NOOP,
            )
            for ra, _, name in _READAHEADS
            for how, key in (
                (" (disk cache)", "remount_gbps"),
                (" + drop_caches", "remount_dropped_gbps"),
            )
        ),
        Throughput(
            label="2. after remount (readahead 1024)",
            mine=_seq("mastfs_ra1024", "remount_gbps"),
            ref_name="the disk under the cache: 4 × dd iflag=direct bs=8M",
            ref=_seq("disk_direct_gbps"),
        ),
        *(
            Throughput(
                label="2. warm re-read, same mount (readahead 1024)",
                mine=_seq("mastfs_ra1024", "warm_gbps"),
                ref_name=f"{peer}, warm re-read",
                ref=_seq(peer, "warm_gbps"),
                unless_error=_seq(peer),
            )
            for peer, _ in _PEERS
        ),
    ),
)

_HEADER_MODES = (("getheader", "fits.getheader"), ("section", "fits.open + .section[0,0,:16,:16]"))

HEADER = Group(
    "header",
    missing="3. header-only access",
    rows=tuple(
        row
        for mode, label in _HEADER_MODES
        for row in (
            FetchedShare(
                label=f"3. {label}, 4.3 GiB product, fresh mount: bytes fetched",
                when=("header", mode, "fetched"),
                fetched=("header", mode, "fetched"),
                requests=("header", mode, "requests"),
                size=("header", "size"),
                goal=HEADER_SHARE,
            ),
            Faster(
                label=f"3. {label}: time",
                mine=("header", mode, "seconds"),
                ref_name="astroquery download_file",
                ref=("header", "astroquery", "seconds"),
                goal=HEADER_FASTER,
            ),
        )
    ),
)

_RANDOM_PHASES = (
    ("cold", "cold (fresh cache)", "http", "HTTP range GET, one connection"),
    ("second_pass", "second pass, same mount", "noop_warm", "no-op FUSE, second pass"),
    ("remount", "after remount (disk cache)", "noop_cold", "no-op FUSE, first pass"),
)

RANDOM = Group(
    "random",
    missing="4. random reads",
    rows=(
        *(
            Latency(
                label=f"4. random 64 KiB reads, {label}: {q} latency",
                mine=("random", phase, f"{q}_ms"),
                ref_name=ref_name,
                ref=("random", ref_key, f"{q}_ms"),
            )
            for phase, label, ref_key, ref_name in _RANDOM_PHASES
            for q in ("p50", "p99")
        ),
        FetchedPerRead(
            label="4. random reads, cold: bytes fetched per 64 KiB read",
            when=("random", "fetched"),
            fetched=("random", "fetched"),
            requests=("random", "requests"),
            reads=RANDOM_READS,
            read_size=RANDOM_SIZE,
            goal=ONE_BLOCK_PER_READ,
        ),
        MibRate(
            label="4. random reads after remount: throughput (1 thread)",
            when=("random", "remount", "mibps"),
            mine=("random", "remount", "mibps"),
            ref_name="no-op FUSE",
            ref=("random", "noop_cold", "mibps"),
            goal=RANDOM_AFTER_REMOUNT,
        ),
    ),
)

PARALLEL = Group(
    "parallel",
    missing="5. parallel readers",
    rows=(
        Throughput(
            label=f"5. {PARALLEL_READERS} parallel readers × {PARALLEL_MIB} MiB, aggregate",
            mine=("parallel", "mastfs_gbps"),
            ref_name=f"{PARALLEL_READERS} parallel curls, same ranges",
            ref=("parallel", "curl_gbps"),
        ),
        Overfetch(
            label="5. parallel readers: bytes fetched / bytes read",
            when=("parallel", "fetched"),
            fetched=("parallel", "fetched"),
            read_mib=PARALLEL_READERS * PARALLEL_MIB,
        ),
    ),
)


def _entries(results: Results) -> str:
    return f"6. program 1999 ({(lookup(results, ('meta', 'entries')) or 0) - 1} entries)"


META = Group(
    "meta",
    missing="6. metadata at scale",
    rows=(
        Timed(label=lambda r: f"{_entries(r)}: mount → ready", mine=("meta", "mount_ready_s")),
        *(
            Timed(
                label=f"6. ls -lR, {which}",
                mine=("meta", f"ls_lR_{i}_s"),
                ref_name="local copy of the tree",
                ref=("meta", f"local_ls_lR_{i}_s"),
                goal=LISTING,
            )
            for i, which in ((1, "first"), (2, "second"))
        ),
        *(
            Timed(
                label=f"6. find | wc -l, {which}",
                mine=("meta", f"find_{i}_s"),
                ref_name="local copy of the tree",
                ref=("meta", f"local_find_{i}_s"),
            )
            for i, which in ((1, "first"), (2, "second"))
        ),
        TimedPair(
            label="6. ls -R (no stat, no xattr), first / second",
            first=("meta", "ls_R_1_s"),
            second=("meta", "ls_R_2_s"),
        ),
    ),
)

MEMORY = Group(
    "memory",
    missing="7. memory while streaming",
    rows=(
        PeakRss(
            label="7. daemon peak RSS (VmHWM), dd of the 4.3 GiB product",
            kb=("memory", "end_kb"),
            samples=("memory", "samples"),
            goal=MEMORY_STREAMING,
        ),
        Throughput(
            label="7. (same run) cold sequential 4.3 GiB, readahead 1024",
            mine=("memory", "stream_gbps"),
            ref_name="curl 1 GiB (network limit)",
            ref=("seq", "curl_gbps"),
        ),
    ),
)

# Shown whenever the daemon's RSS was read, even if the listings failed later.
META_MEMORY = Group(
    "meta",
    needs_ok=False,
    rows=(
        PeakRss(
            label="7. daemon peak RSS (VmHWM), 10k-product tree after ls -lR",
            when=("meta", "daemon_kb"),
            kb=("meta", "daemon_kb"),
            goal=MEMORY_TREE,
        ),
    ),
)

MOUNT_TIME = Group(
    "mount_time",
    missing="8. mount → ready under the mast profile",
    rows=tuple(
        Faster(
            label=f"8. program {program}: mount → ready, simulator --profile mast",
            mine=("mount_time", "programs", program, "mastfs_s"),
            ref_name="astroquery query_criteria + get_product_list, fresh process",
            ref=("mount_time", "programs", program, "astroquery_s"),
            goal=NO_SLOWER,
        )
        for program in ("2734", "1999")
    ),
)

SCALEOUT = Group(
    "scaleout",
    missing="9. scale-out (nginx tier, cloud source)",
    rows=(
        OriginShare(
            label="9. 3 nodes × 5 products: bytes the archive sent, through one nginx tier",
            mine=("scaleout", "tier_origin_mib"),
            ref_name="3 nodes direct",
            ref=("scaleout", "direct_origin_mib"),
            goal=TIER_ORIGIN_SHARE,
        ),
        Throughput(
            label="9. 3 nodes × 5 products, aggregate, through the tier (archive: 20 ms, 25 MB/s)",
            mine=("scaleout", "tier_gbps"),
            ref_name="3 nodes direct",
            ref=("scaleout", "direct_gbps"),
        ),
        Throughput(
            label="9. one node, 5 products, --source cloud (bucket: same knobs)",
            mine=("scaleout", "cloud_gbps"),
            ref_name="--source mast",
            ref=("scaleout", "mast_gbps"),
        ),
    ),
)

TABLE: tuple[Group, ...] = (
    SEQ,
    HEADER,
    RANDOM,
    PARALLEL,
    META,
    MEMORY,
    META_MEMORY,
    MOUNT_TIME,
    SCALEOUT,
)


def build_rows(results: Results) -> list[Row]:
    """The table's rows for `results` (bench.json's "results")."""
    return [row for group in TABLE for row in group.build(results)]
