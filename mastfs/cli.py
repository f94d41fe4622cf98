"""Command line: parsing arguments into values, logging, dispatch to the commands, exit codes.

Bad input gets one line on stderr (`mastfs: error: ...`) and a non-zero exit, never a traceback:
exit 2 for usage errors, 1 for everything that failed at run time. The commands live elsewhere:
the mount in `mount.py` (started in the background by `daemon.py`), the query in `session.py`,
commands on a running mount in `control.py`.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from mastfs import __version__
from mastfs.daemon import READY_FD_OPTION, TOKEN_FD_OPTION
from mastfs.resolver import DEFAULT_RESOLVER, RESOLVER_ENV
from mastfs.runtime import DEFAULT_SERVER, SERVER_ENV
from mastfs.safetext import clean
from mastfs.token import MAST_TOKEN_ENV

if TYPE_CHECKING:
    from mastfs.archive import Query
    from mastfs.archive_http import Limits
    from mastfs.crds import CrdsServer
    from mastfs.datacache import DataCacheSpec
    from mastfs.mount import MountOptions
    from mastfs.ownership import Ownership
    from mastfs.selection import Selection

log = logging.getLogger(__name__)

DATA_CACHE_ENV = "MASTFS_DATA_CACHE"
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_ANGLE_UNITS = {
    "": 1.0,
    "d": 1.0,
    "deg": 1.0,
    "°": 1.0,
    "m": 1 / 60,
    "arcmin": 1 / 60,
    "'": 1 / 60,
    "s": 1 / 3600,
    "arcsec": 1 / 3600,
    '"': 1 / 3600,
}


class UsageError(Exception):
    """Bad input: exit 2 with this one line."""


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"mastfs: error: {clean(message)}", file=sys.stderr)
    raise SystemExit(code)


# -- value parsers -----------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """`50G`, `512M`, `1.5T`, `1048576` -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 500M, 50G, 2T)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


def parse_seconds(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return value


def parse_radius(text: str) -> float:
    """`1m` (arcmin), `30s` (arcsec), `0.02deg`, `0.1` (degrees) -> degrees."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(deg|arcmin|arcsec|d|m|s|°|'|\")?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"invalid radius {text!r} (examples: 1m = 1 arcmin, 30s = 30 arcsec, 0.02deg)"
        )
    return float(m.group(1)) * _ANGLE_UNITS[m.group(2) or ""]


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number > 0")
        return value

    return parse


def parse_criterion(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(
            f"invalid criterion {text!r}: expected COLUMN=VALUE (e.g. t_exptime=100..500)"
        )
    return key.strip(), value.strip()


def parse_octal(what: str) -> Callable[[str], int]:
    """An argparse type for `--umask`, `--file-mode`, `--dir-mode`: octal permission bits."""

    def parse(text: str) -> int:
        from mastfs.ownership import OwnershipError, parse_mode

        try:
            return parse_mode(text, what)
        except OwnershipError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def parse_uid(text: str) -> int:
    """A user name or a numeric uid."""
    import pwd

    if text.strip().isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text.strip()).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such user {text!r}") from None


def parse_gid(text: str) -> int:
    """A group name or a numeric gid."""
    import grp

    if text.strip().isdigit():
        return int(text)
    try:
        return grp.getgrnam(text.strip()).gr_gid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no such group {text!r}") from None


def parse_metrics_address(text: str) -> tuple[str, int]:
    from mastfs.metrics import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(out)


# -- parser ------------------------------------------------------------------------------------


def _add_query_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("query (at least one)")
    g.add_argument(
        "--program",
        "-p",
        action="append",
        metavar="ID[,ID...]",
        help="proposal / program ID(s), e.g. 2734",
    )
    g.add_argument("--target", metavar="NAME", help="target name, resolved by the archive")
    g.add_argument(
        "--radius",
        type=parse_radius,
        default=0.2,
        metavar="ANGLE",
        help="search radius around --target: 1m, 30s, 0.02deg (default 0.2deg)",
    )
    g.add_argument("--collection", action="append", metavar="NAME", help="mission, e.g. JWST, HST")
    g.add_argument("--instrument", action="append", metavar="NAME", help="e.g. NIRISS/SOSS, MIRI*")
    g.add_argument("--filters", action="append", metavar="NAME", help="e.g. F770W")
    g.add_argument(
        "--criteria",
        action="append",
        type=parse_criterion,
        metavar="KEY=VALUE",
        help="any Mast.Caom.Filtered column; MIN..MAX for ranges (repeatable)",
    )


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "selection (as the MAST Portal's download overlay: values OR-ed, kinds AND-ed)"
    )
    quick = g.add_mutually_exclusive_group()
    quick.add_argument(
        "--all",
        dest="quick",
        action="store_const",
        const="all",
        help="everything except JWST guide-star files (default)",
    )
    quick.add_argument(
        "--recommended",
        dest="quick",
        action="store_const",
        const="recommended",
        help="Minimum Recommended Products only",
    )
    g.add_argument(
        "--level",
        action="append",
        metavar="L[,L...]",
        help="product level: JWST 1b 2a 2b 3 4; HST 1 2 3",
    )
    g.add_argument(
        "--group",
        action="append",
        metavar="G[,G...]",
        help="product group / suffix: UNCAL, CAL, RATEINTS, X1DINTS, I2D, ASN, ...",
    )
    g.add_argument(
        "--category",
        action="append",
        metavar="C[,C...]",
        help="SCIENCE, AUXILIARY, INFO, PREVIEW, CATALOG, CALIBRATION",
    )
    g.add_argument(
        "--extension",
        action="append",
        metavar="EXT[,EXT...]",
        help="file extension: fits, jpg, png, csv, ecsv, json, ...",
    )
    g.add_argument("--guide-stars", action="store_true", help="add JWST guide-star files")
    g.add_argument(
        "--regex",
        action="append",
        metavar="PATTERN",
        help="keep file names matching a JavaScript regex (/pattern/i form accepted)",
    )
    g.add_argument(
        "--exclude-regex",
        action="append",
        metavar="PATTERN",
        help="drop file names matching a JavaScript regex",
    )
    g.add_argument("--public-only", action="store_true", help="drop exclusive-access products")


def _add_archive_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("archive")
    g.add_argument(
        "--server",
        metavar="URL",
        help=f"MAST base URL (env {SERVER_ENV}; default {DEFAULT_SERVER})",
    )
    g.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"file holding only a MAST API token, mode 600 (else env {MAST_TOKEN_ENV})",
    )
    g.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="persistent cache (default $XDG_CACHE_HOME/mastfs)",
    )
    g.add_argument(
        "--resolver",
        metavar="URL",
        help=f"name resolver for --target, asked as astroquery 0.4.11 asks it, the archive's "
        f"lookup if it fails (env {RESOLVER_ENV}; default {DEFAULT_RESOLVER})",
    )


def _add_reference_args(p: argparse.ArgumentParser) -> None:
    from mastfs.crds import CRDS_SERVER_ENV, DEFAULT_SERVERS

    defaults = ", ".join(f"{mission} {url}" for mission, (_, url) in DEFAULT_SERVERS.items())
    g = p.add_argument_group("calibration references (docs/usage.md)")
    g.add_argument(
        "--references",
        action="store_true",
        help="also show the CRDS reference files the selected products were calibrated with "
        "(their primary headers' R_* keywords) in references/, one file per reference, read "
        "lazily from CRDS; each FITS product's primary header is read first",
    )
    g.add_argument(
        "--crds-server",
        metavar="URL",
        help=f"CRDS server of every mission's references, which never get the MAST token "
        f"(env {CRDS_SERVER_ENV}; default per mission: {defaults})",
    )


def _add_limit_args(p: argparse.ArgumentParser, timeout: bool = False) -> None:
    from mastfs.archive_http import Limits

    defaults = Limits()
    g = p.add_argument_group("limits on the archive's answers (docs/usage.md)")
    if timeout:
        g.add_argument(
            "--timeout",
            type=_positive(float),
            default=defaults.timeout,
            metavar="SECONDS",
            help=f"bound of each archive request (default {defaults.timeout:g})",
        )
    g.add_argument(
        "--max-response",
        type=parse_size,
        default=defaults.max_response,
        metavar="SIZE",
        help="largest answer, decompressed, all pages of one request together "
        f"(default {defaults.max_response >> 20}M)",
    )
    g.add_argument(
        "--max-rows",
        type=_positive(int),
        default=defaults.max_rows,
        metavar="N",
        help=f"most rows of one query, observations and products (default {defaults.max_rows})",
    )
    g.add_argument(
        "--max-pages",
        type=_positive(int),
        default=defaults.max_pages,
        metavar="N",
        help=f"most pages of one Portal request (default {defaults.max_pages})",
    )
    g.add_argument(
        "--max-query-time",
        type=_positive(float),
        default=defaults.query_time,
        metavar="SECONDS",
        help=f"longest a whole query may take (default {defaults.query_time:g})",
    )


def _add_mount_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mount")
    g.add_argument(
        "--layout",
        choices=("nested", "flat"),
        default="nested",
        help="nested: MISSION/DATASET/FILE (default); flat: every file at the root",
    )
    g.add_argument(
        "--cache-size",
        type=parse_size,
        default=parse_size("50G"),
        metavar="SIZE",
        help="bound of the disk cache, e.g. 50G (default)",
    )
    g.add_argument(
        "--readahead-kb",
        type=int,
        default=1024,
        metavar="KB",
        help="kernel readahead for the mount, needs root (default 1024; 0 = leave)",
    )
    g.add_argument(
        "--timeout",
        type=_positive(float),
        default=60.0,
        metavar="SECONDS",
        help=(
            "every read returns data or fails (EIO) within this long, stalls and retries "
            "included; archive requests give up after it too (default 60)"
        ),
    )
    g.add_argument(
        "--metadata-ttl",
        type=parse_seconds,
        default=60.0,
        metavar="SECONDS",
        help=(
            "on open, ask the archive whether a product changed when it last said so more "
            "than this long ago (default 60; 0 = on every open). An open file keeps reading "
            "the version it opened; if the archive replaces it, that file's reads fail (EIO)"
        ),
    )
    g.add_argument("--allow-other", action="store_true", help="let other users see the mount")
    g.add_argument(
        "--uid",
        type=parse_uid,
        metavar="USER",
        help="owner of every file and folder, a name or number (default: you)",
    )
    g.add_argument(
        "--gid",
        type=parse_gid,
        metavar="GROUP",
        help="group of every file and folder, a name or number (default: your group)",
    )
    g.add_argument(
        "--umask",
        type=parse_octal("umask"),
        metavar="UMASK",
        help="permission bits to clear from 0444 (files) and 0555 (folders) (default 022)",
    )
    g.add_argument(
        "--file-mode",
        type=parse_octal("file mode"),
        metavar="MODE",
        help="permissions of public files, e.g. 0440 (overrides --umask)",
    )
    g.add_argument(
        "--dir-mode",
        type=parse_octal("dir mode"),
        metavar="MODE",
        help="permissions of folders, e.g. 0550 (overrides --umask; the root keeps "
        "your write bit, which `mastfs select` needs)",
    )
    g.add_argument(
        "--exclusive-group",
        type=parse_gid,
        metavar="GROUP",
        help="let GROUP read exclusive-access files (0440, that group) and the views "
        "naming your MAST login; otherwise they are yours alone (0400)",
    )
    g.add_argument(
        "-f", "--foreground", action="store_true", help="stay in the foreground and log to stderr"
    )
    g.add_argument("--debug", action="store_true", help="verbose logging")
    g.add_argument(
        "--metrics",
        type=parse_metrics_address,
        metavar="ADDR",
        help="serve Prometheus metrics at [HOST:]PORT (a bare port: loopback only); "
        "counters and sizes, never the query or file names",
    )
    g.add_argument(
        "--log",
        choices=("auto", "file", "syslog"),
        default="auto",
        help="where the background process logs: its log file in the cache directory, or "
        "syslog/journald (/dev/log); auto: syslog when started by systemd, else the file",
    )
    g.add_argument(READY_FD_OPTION, type=int, help=argparse.SUPPRESS)
    g.add_argument(TOKEN_FD_OPTION, type=int, help=argparse.SUPPRESS)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    from mastfs.cloud import DEFAULT_BUCKET_URL

    g = p.add_argument_group("where public product bytes come from (docs/scale-out.md)")
    g.add_argument(
        "--data-cache",
        metavar="URL[|URL...][;...][;DIRECT]",
        help=f"site cache tier, a reverse proxy in front of the archive shared by the nodes "
        f"(env {DATA_CACHE_ENV}): '|' balances load within a group, ';' fails over to the next "
        "group, DIRECT last lets bytes come from the archive when every cache failed. "
        "Exclusive-access products and queries always go to the archive; the token never "
        "goes to a cache",
    )
    g.add_argument(
        "--source",
        choices=("mast", "cloud"),
        default="mast",
        help="mast: the archive (default); cloud: the AWS open-data copy, anonymous range reads, "
        "the archive for what the cloud lacks",
    )
    g.add_argument(
        "--cloud-url",
        metavar="URL",
        default=DEFAULT_BUCKET_URL,
        help=f"the cloud copy's bucket URL for --source cloud (default {DEFAULT_BUCKET_URL})",
    )


def sources_from_args(args: argparse.Namespace) -> tuple[DataCacheSpec | None, str | None]:
    """The `--data-cache` tier (or its environment variable) and the `--source cloud` URL."""
    from mastfs.datacache import DataCacheError, parse_data_cache

    text = getattr(args, "data_cache", None) or os.environ.get(DATA_CACHE_ENV) or ""
    try:
        spec = parse_data_cache(text) if text.strip() else None
    except DataCacheError as exc:
        raise UsageError(str(exc)) from None
    if getattr(args, "source", "mast") != "cloud":
        return spec, None
    cloud_url = args.cloud_url.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", cloud_url):
        raise UsageError(f"--cloud-url: {cloud_url!r} is not an http:// or https:// URL")
    return spec, cloud_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mastfs",
        description="Mount a MAST archive query as a read-only filesystem. Files appear at once; "
        "only the bytes you read are fetched, into a persistent disk cache.",
        epilog="Examples:\n"
        "  mastfs mount --program 2734 ~/mast/2734\n"
        "  mastfs mount --program 1558 --level 3 --extension fits --layout flat ~/mast/1558\n"
        "  mastfs select ~/mast/2734 --group X1DINTS,CAL\n"
        "  mastfs mount --program 2734 --references ~/mast/2734   # + CRDS references/\n"
        "  mastfs ls --program 2734 --recommended\n"
        "  mastfs warm ~/mast/2734 --group X1DINTS   # fetch ahead, for offline work\n"
        "  mastfs status ~/mast/2734\n"
        "  mastfs umount ~/mast/2734\n"
        "  mastfs demo ~/mast/demo      # built-in archive simulator, no network needed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mastfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    m = sub.add_parser("mount", help="mount a query", description="Mount a MAST query.")
    _add_query_args(m)
    _add_selection_args(m)
    _add_archive_args(m)
    _add_mount_args(m)
    _add_source_args(m)
    _add_reference_args(m)
    _add_limit_args(m)
    m.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")

    d = sub.add_parser(
        "demo",
        help="mount program 2734 from the built-in archive simulator",
        description="Start the built-in MAST archive simulator inside the mount process and "
        "mount its JWST program 2734 (NIRISS/SOSS time series). No network needed.",
    )
    _add_selection_args(d)
    d.add_argument("--cache-dir", type=Path, metavar="DIR", help="persistent cache directory")
    _add_mount_args(d)
    _add_limit_args(d)
    d.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")

    u = sub.add_parser("umount", help="unmount and stop the mount process")
    u.add_argument("--lazy", "-z", action="store_true", help="detach even if busy")
    u.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")

    s = sub.add_parser(
        "select",
        help="change a running mount's selection",
        description="Change the selection of a running mount without remounting: the tree, "
        "selection.csv and manifest.html change together; open files stay readable. "
        "Without selection options, print the current selection.",
    )
    _add_selection_args(s)
    s.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")

    st = sub.add_parser(
        "status",
        help="what a running mount is doing",
        description="Print a running mount's query, selection, cache use and hit rate, bytes "
        "fetched, requests in flight and recent errors. Only the user who mounted it (and "
        "root) may ask.",
    )
    st.add_argument("--json", action="store_true", help="the full report as JSON")
    st.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")

    w = sub.add_parser(
        "warm",
        help="fetch files into the cache ahead of time",
        description="Fetch a mount's files into its disk cache, in parallel, for offline "
        "work: the whole mount, the files and folders given, and of those only what the "
        "selection options keep. Files already cached are skipped, so an interrupted run "
        "resumes where it stopped; a set larger than the cache's bound is refused. A progress "
        "line on a terminal, one line per file otherwise.",
        epilog="Example: mastfs warm ~/mast/2734 ~/mast/2734/JWST --group X1DINTS",
    )
    w.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")
    w.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="files or folders in it")
    _add_selection_args(w)
    w.add_argument(
        "--parallel",
        type=_positive(int),
        default=4,
        metavar="N",
        help="files read at once (default 4)",
    )
    w.add_argument("--dry-run", action="store_true", help="say what would be fetched, and stop")

    ls = sub.add_parser("ls", help="print a query's selection without mounting")
    _add_query_args(ls)
    _add_selection_args(ls)
    _add_archive_args(ls)
    ls.add_argument(
        "--layout",
        choices=("nested", "flat"),
        default="nested",
        help="paths in the CSV's Path column",
    )
    ls.add_argument("--csv", action="store_true", help="print selection.csv instead of a table")
    _add_reference_args(ls)
    _add_limit_args(ls, timeout=True)

    c = sub.add_parser(
        "cache",
        help="check the block cache",
        description="Work on the block cache shared by every mount of this user.",
    )
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    v = csub.add_parser(
        "verify",
        help="prove every cached block by its checksums",
        description=(
            "Read every cached block and check it against its checksums; report damaged "
            "blocks, rows whose file is gone, rows mastfs never writes, and files no row "
            "points to. Exit status 1 when something is wrong (0 after --repair). Safe while "
            "mounts use the cache."
        ),
    )
    v.add_argument(
        "--repair",
        action="store_true",
        help="drop what is damaged (it is fetched again when read) and delete orphan files",
    )
    v.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the cache directory (default: $XDG_CACHE_HOME/mastfs or ~/.cache/mastfs)",
    )

    comp = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print the completion script of a shell (made by shtab from these options). "
        "bash: mastfs completion bash > ~/.local/share/bash-completion/completions/mastfs",
    )
    comp.add_argument("shell", choices=("bash", "zsh", "tcsh"))

    sub.add_parser("sim", help="run the MAST archive simulator", add_help=False)
    return parser


# -- argument -> domain ------------------------------------------------------------------------


def selection_from_args(args: argparse.Namespace) -> Selection:
    from mastfs.selection import Selection, SelectionError

    try:
        return Selection.build(
            quick=args.quick or "all",
            levels=_split(args.level),
            groups=_split(args.group),
            categories=_split(args.category),
            extensions=_split(args.extension),
            guide_stars=args.guide_stars,
            regex=tuple(args.regex or ()),
            exclude_regex=tuple(args.exclude_regex or ()),
            public_only=args.public_only,
        )
    except SelectionError as exc:
        raise UsageError(str(exc)) from exc


def _has_selection_args(args: argparse.Namespace) -> bool:
    return bool(
        args.quick
        or args.level
        or args.group
        or args.category
        or args.extension
        or args.guide_stars
        or args.regex
        or args.exclude_regex
        or args.public_only
    )


def query_from_args(args: argparse.Namespace) -> Query:
    from mastfs.archive import Query

    query = Query(
        programs=_split(args.program),
        target=args.target,
        radius_deg=args.radius,
        collection=_split(args.collection),
        instrument=_split(args.instrument),
        filters=_split(args.filters),
        criteria=tuple(args.criteria or ()),
    )
    if query.is_empty():
        raise UsageError(
            "no query given: use --program, --target, --collection, --instrument, "
            "--filters or --criteria"
        )
    return query


def server_from_args(args: argparse.Namespace) -> str:
    from mastfs.runtime import server_url

    try:
        return server_url(args.server)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def crds_from_args(args: argparse.Namespace) -> dict[str, CrdsServer] | None:
    """The CRDS server of each mission with `--references` (None without); a bad
    `--crds-server` (or `$MASTFS_CRDS_SERVER`) is a usage error naming it either way."""
    from mastfs.crds import crds_servers

    try:
        servers = crds_servers(getattr(args, "crds_server", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return servers if getattr(args, "references", False) else None


def token_from_args(args: argparse.Namespace) -> str | None:
    """The MAST token: from the daemon's parent (a pipe), `--token-file`, or the environment.

    A token file with anything but one token, or an unusable variable, is a usage error that
    names the source and never echoes it; a token file others may read gets a warning.
    """
    from mastfs.daemon import WARNING, show
    from mastfs.token import TokenError, find_token, read_token_fd

    try:
        if getattr(args, "token_fd", None) is not None:
            return read_token_fd(args.token_fd)
        token, warning = find_token(args.token_file)
        if warning is not None:
            show(WARNING, warning)
        return token
    except TokenError as exc:
        raise UsageError(str(exc)) from None


def _hold_token() -> None:
    """Keep a token this process holds from leaking: no core dump or ptrace (not dumpable), and
    no child (fusermount3, the daemon) inheriting it through the environment."""
    from mastfs.token import protect_process

    protect_process()
    os.environ.pop(MAST_TOKEN_ENV, None)


def ownership_from_args(args: argparse.Namespace, token: str | None) -> Ownership:
    from mastfs.ownership import DEFAULT_UMASK, Ownership

    return Ownership.build(
        os.getuid() if args.uid is None else args.uid,
        os.getgid() if args.gid is None else args.gid,
        mounter=os.getuid(),
        umask=DEFAULT_UMASK if args.umask is None else args.umask,
        file_mode=args.file_mode,
        dir_mode=args.dir_mode,
        exclusive_gid=args.exclusive_group,
        private_views=token is not None,
    )


def resolver_from_args(args: argparse.Namespace) -> str:
    from mastfs.resolver import valid_resolver_url

    try:
        chosen = getattr(args, "resolver", None) or os.environ.get(RESOLVER_ENV)
        return valid_resolver_url(chosen or DEFAULT_RESOLVER)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def limits_from_args(args: argparse.Namespace) -> Limits:
    from mastfs.archive_http import Limits

    return Limits(
        timeout=args.timeout,
        max_response=args.max_response,
        max_rows=args.max_rows,
        max_pages=args.max_pages,
        query_time=args.max_query_time,
    )


def cache_dir_from_args(args: argparse.Namespace) -> Path:
    if args.cache_dir is not None:
        return Path(os.path.abspath(args.cache_dir))
    from mastfs.runtime import default_cache_dir

    return default_cache_dir()


class _CleanFormatter(logging.Formatter):
    """Log lines may quote the archive: no control character reaches a terminal or a log."""

    def format(self, record: logging.LogRecord) -> str:
        return clean(super().format(record), keep_newlines=True)


def setup_logging(debug: bool, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_CleanFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, handlers=[handler], force=True
    )
    # astropy and astroquery install their own Logger class on import: their loggers are
    # quietened in archive.py once imported, never created here first.
    for noisy in ("urllib3",):
        logging.getLogger(noisy).setLevel(logging.WARNING if not debug else logging.INFO)


# -- commands ----------------------------------------------------------------------------------


def cmd_mount(args: argparse.Namespace, argv: Sequence[str], demo: bool = False) -> int:
    from mastfs.mountpoint import MountError, check_cache_dir, check_mountpoint

    selection = selection_from_args(args)
    if demo:
        from mastfs.archive import Query
        from mastfs.demo import DEMO_PROGRAM

        query = Query(programs=(DEMO_PROGRAM,))
        server, token = "http://127.0.0.1", None
        data_cache, cloud_url = None, None
    else:
        query = query_from_args(args)
        server, token = server_from_args(args), token_from_args(args)
    resolver = resolver_from_args(args)
    data_cache, cloud_url = sources_from_args(args)
    crds_servers = crds_from_args(args)
    _hold_token()
    cache_dir = cache_dir_from_args(args)
    if args.ready_fd is None:
        if demo and not args.mountpoint.exists():
            # The demo is the first thing a new user runs: make its folder for them.
            args.mountpoint.mkdir(parents=True, exist_ok=True)
        # Checks the user gets at once, before anything is spawned.
        try:
            check_mountpoint(args.mountpoint)
            check_cache_dir(cache_dir)
        except MountError as exc:
            fail(str(exc))
        if not args.foreground:
            return _mount_in_background(args.mountpoint, argv, cache_dir, demo, token)

    if not demo:
        from mastfs.archive import prefetch

        # Its answer comes while the rest of the mount is imported.
        prefetch(server, token, limits_from_args(args))
    from mastfs.mount import MountOptions

    start_server = None
    if demo:
        from mastfs.demo import start_embedded_sim

        start_server = start_embedded_sim
    opts = MountOptions(
        mountpoint=Path(os.path.abspath(args.mountpoint)),
        query=query,
        selection=selection,
        server=server,
        layout=args.layout,
        cache_dir=cache_dir,
        cache_size=args.cache_size,
        token=token,
        readahead_kb=args.readahead_kb,
        metadata_ttl=args.metadata_ttl,
        allow_other=args.allow_other,
        ownership=ownership_from_args(args, token),
        limits=limits_from_args(args),
        resolver=resolver,
        debug=args.debug,
        start_server=start_server,
        metrics=args.metrics,
        data_cache=data_cache,
        cloud_url=cloud_url,
        crds_servers=crds_servers,
    )
    return _serve(opts, args.ready_fd, args.debug, args.log)


def _mount_in_background(
    mountpoint: Path, argv: Sequence[str], cache_dir: Path, demo: bool, token: str | None
) -> int:
    from mastfs import daemon, runtime
    from mastfs.private import PrivacyError

    try:
        code = daemon.spawn(argv, runtime.log_path(cache_dir, mountpoint), token)
    except (daemon.DaemonError, PrivacyError) as exc:
        fail(str(exc))
    if demo and code == 0:
        from mastfs.demo import next_steps

        print(next_steps(mountpoint))
    return code


def _serve(opts: MountOptions, ready_fd: int | None, debug: bool, log_to: str = "file") -> int:
    """Run the mount in this process; as a daemon when `ready_fd` is its parent's pipe."""
    import trio

    from mastfs.daemon import ConsoleReporter, PipeReporter
    from mastfs.mount import MountError, serve

    pipe = PipeReporter(ready_fd) if ready_fd is not None else None
    setup_logging(debug)
    if pipe is not None:
        from mastfs import logtarget

        try:
            logtarget.use_syslog(log_to, _CleanFormatter(logtarget.FORMAT))
        except OSError as exc:
            message = f"cannot log to syslog at {logtarget.ADDRESS}: {exc.strerror}; use --log file"
            pipe.error(message)
            fail(message)
    try:
        try:
            trio.run(serve, opts, pipe or ConsoleReporter())
        except BaseExceptionGroup as group:
            # A mistake met once the mount's nursery is open arrives wrapped by it.
            mistake, rest = group.split(MountError)
            if mistake is None or rest is not None:
                raise
            raise next(_leaves(mistake)) from None
    except MountError as exc:
        if pipe is not None:
            pipe.error(str(exc))
        fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.exception("mount failed")
        message = f"mount failed: {exc}"
        if pipe is not None:
            pipe.error(message)
        fail(message)
    return 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def cmd_umount(args: argparse.Namespace) -> int:
    from mastfs.control import ControlError, umount

    try:
        note = umount(args.mountpoint, lazy=args.lazy)
    except ControlError as exc:
        fail(str(exc))
    if note:
        print(f"mastfs: {note}", file=sys.stderr)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from mastfs.control import ControlError, select

    change = _has_selection_args(args)
    selection = selection_from_args(args) if change else None
    try:
        info = select(args.mountpoint, selection)
    except ControlError as exc:
        cause = exc.__cause__
        if (
            isinstance(cause, OSError)
            and cause.errno == errno.EINVAL
            and selection is not None
            and (selection.regex or selection.exclude_regex)
        ):
            # Checked here already, so the mount refused it while matching (its log says so).
            from mastfs.selection import MATCH_BUDGET

            fail(
                f"{exc}: its regexes took more than {MATCH_BUDGET:g} s to match the mount's "
                "file names; simplify them"
            )
        fail(str(exc))
    if not change:
        print(clean(f"selection: {info.selection}"))
    print(clean(info.summary))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    import trio

    from mastfs.daemon import ConsoleReporter
    from mastfs.private import PrivacyError
    from mastfs.runtime import check_cache_dir
    from mastfs.selection import SelectionError, format_summary
    from mastfs.session import SessionError, open_session
    from mastfs.table import format_table

    selection = selection_from_args(args)
    query = query_from_args(args)
    server, token = server_from_args(args), token_from_args(args)
    crds_servers = crds_from_args(args)
    _hold_token()
    try:
        check_cache_dir(cache_dir_from_args(args))
    except PrivacyError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cache directory {cache_dir_from_args(args)} cannot be written: {exc.strerror}")
    setup_logging(False)
    logging.getLogger("mastfs").setLevel(logging.WARNING)
    reporter = ConsoleReporter()
    start = functools.partial(
        open_session,
        query,
        selection,
        server=server,
        token=token,
        cache_dir=cache_dir_from_args(args),
        layout=args.layout,
        reporter=reporter,
        limits=limits_from_args(args),
        resolver=resolver_from_args(args),
    )
    try:
        session = trio.run(start)
        warnings = session.unmatched_warnings()
    except (SessionError, SelectionError) as exc:
        # SelectionError: a regex that takes too long to match (`RegexTooSlow`).
        fail(str(exc))
    for warning in warnings:
        reporter.warning(warning)
    if crds_servers is not None:
        from mastfs.discovery import references_of_session

        find = functools.partial(
            references_of_session,
            session.state,
            server=server,
            token=token,
            cache_dir=cache_dir_from_args(args),
            servers=crds_servers,
            reporter=reporter,
            timeout=args.timeout,
        )
        trio.run(find)
    state = session.state
    snap = state.snapshot
    summary = format_summary(snap.summary, session.user)
    try:
        if args.csv:
            sys.stdout.buffer.write(snap.csv)
            sys.stdout.flush()
            print(clean(summary), file=sys.stderr)
        else:
            print(format_table(snap.selected, state.can_read, color=sys.stdout.isatty()))
            print(clean(summary), flush=True)
    except BrokenPipeError:
        # `mastfs ls ... | head`: the reader has gone; stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


def cmd_cache_verify(args: argparse.Namespace) -> int:
    from mastfs.cache.verify import VerifyError, verify
    from mastfs.private import PrivacyError

    cache_dir = cache_dir_from_args(args)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rchecking {done}/{total} rows", end="", file=sys.stderr, flush=True)

    try:
        report = verify(cache_dir, repair=args.repair, progress=progress)
    except (VerifyError, PrivacyError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot check {cache_dir}: {exc.strerror or exc}")
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    print("\n".join(report.lines()))
    return 0 if report.clean or report.repaired else 1


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from mastfs.control import ControlError, status
    from mastfs.status import format_status

    try:
        report = status(args.mountpoint)
    except ControlError as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_status(report))
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    from mastfs import warm
    from mastfs.control import ControlError, status

    selection = selection_from_args(args) if _has_selection_args(args) else None
    try:
        limit = status(args.mountpoint).get("cache_limit")
        plan = warm.make_plan(*warm.collect(args.mountpoint, args.paths, selection))
        warm.check_fits(plan, limit if isinstance(limit, int) else None)
    except (ControlError, warm.WarmError) as exc:
        fail(str(exc))
    if args.dry_run or not plan.files:
        print(clean(f"{plan.describe()}" + ("" if plan.files else ": nothing to do")))
        return 0
    reporter = warm.TerminalReporter() if sys.stderr.isatty() else warm.LineReporter()
    outcome = warm.run(plan, reporter, parallel=args.parallel)
    line = (
        f"warmed {outcome.warmed} of {len(plan.files)} files "
        f"({warm.format_bytes(outcome.bytes_read)} read)"
        + (f"; {outcome.failed} failed (manifest.html says why)" if outcome.failed else "")
    )
    if outcome.interrupted:
        print(clean(f"mastfs: interrupted: {line}; run it again to resume"), file=sys.stderr)
        return 130
    print(clean(line))
    return 1 if outcome.failed else 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    try:
        print(shtab.complete(build_parser(), shell=args.shell), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


def _config_defaults(parser: argparse.ArgumentParser) -> dict[str, dict[str, list[object]]]:
    """The config file's values as the commands' defaults (`config.py`); what `config.fill`
    adds after parsing."""
    from mastfs import config

    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    path = config.config_path()
    data = config.load(path)
    if not data:
        return {}
    skip = {"server"} if os.environ.get(SERVER_ENV) else set()
    if os.environ.get("MASTFS_CRDS_SERVER"):
        skip.add("crds_server")
    return config.apply(subparsers.choices, data, path, skip)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:
        from mastfs.sim.cli import main as sim_main

        return sim_main(argv[1:])
    parser = build_parser()
    from mastfs.config import ConfigError, fill

    try:
        later = _config_defaults(parser)
    except ConfigError as exc:
        fail(str(exc), code=2)
    args = parser.parse_args(argv)
    fill(args, later)
    try:
        if args.command == "mount":
            return cmd_mount(args, argv)
        if args.command == "demo":
            args.server, args.token_file = None, None
            return cmd_mount(args, argv, demo=True)
        if args.command == "umount":
            return cmd_umount(args)
        if args.command == "select":
            return cmd_select(args)
        if args.command == "ls":
            return cmd_ls(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "warm":
            return cmd_warm(args)
        if args.command == "completion":
            return cmd_completion(args)
        if args.command == "cache":
            return cmd_cache_verify(args)
    except UsageError as exc:
        fail(str(exc), code=2)
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
