"""Keyword arguments of the Python API, read by the command line's own parser.

The fsspec filesystem, `mastfs.mounted` and `mastfs.selection_table` take the options of
`mastfs mount` as keyword arguments: the flag's name with `_` for `-` (`program=2734`,
`level="2b,3"`, `recommended=True`, `regex=["/seg00[12]/"]`, `criteria={"t_exptime": "100..500"}`,
`cache_size="10G"`, `server=...`, `token_file=...`). They become the flags (`to_argv`) and go
through `cli.build_parser()` and the CLI's own conversions, so every option has one name, one
check and one message; a bad one is a `ValueError` naming it, never a `SystemExit`.

There is no `token=` option: a token given as a value would travel with the options (fsspec
pickles them to every Dask worker, and keeps them in its instance cache's keys). Each process
reads the token itself, from `token_file` or `$MAST_API_TOKEN`, as the mount does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mastfs import cli
from mastfs.archive import Query
from mastfs.archive_http import Limits
from mastfs.crds import CrdsServer
from mastfs.selection import Selection

QUERY_OPTIONS = frozenset(
    {"program", "target", "radius", "collection", "instrument", "filters", "criteria"}
)
SELECTION_OPTIONS = frozenset(
    {
        "all",
        "recommended",
        "level",
        "group",
        "category",
        "extension",
        "guide_stars",
        "regex",
        "exclude_regex",
        "public_only",
    }
)
LIMIT_OPTIONS = frozenset({"timeout", "max_response", "max_rows", "max_pages", "max_query_time"})
# What a process reading products needs besides the query: the options of `mastfs mount`
# that are not about the kernel.
READER_OPTIONS = (
    QUERY_OPTIONS
    | SELECTION_OPTIONS
    | LIMIT_OPTIONS
    | {"server", "resolver", "token_file", "cache_dir", "layout", "cache_size", "metadata_ttl"}
)
# The calibration references (`references/`): `mastfs.mounted` and `selection_table` take them.
REFERENCE_OPTIONS = frozenset({"references", "crds_server"})
# `mastfs.mounted` takes these too; not `foreground`, which would never return.
MOUNT_OPTIONS = READER_OPTIONS | REFERENCE_OPTIONS | {
    "readahead_kb",
    "allow_other",
    "uid",
    "gid",
    "umask",
    "file_mode",
    "dir_mode",
    "exclusive_group",
    "debug",
}
_FLAG = re.compile(r"--([a-z][a-z-]*)")


@dataclass(frozen=True)
class Settings:
    """The checked options of a reader of products (`READER_OPTIONS`)."""

    query: Query | None  # None: no query options, products are named by their URI
    selection: Selection
    layout: str
    server: str
    cache_dir: Path
    cache_size: int
    metadata_ttl: float
    limits: Limits
    # Where `target` names are resolved first (`--resolver`, `$MASTFS_RESOLVER`).
    resolver: str
    # Read in this process; never in repr (options and tracebacks get logged).
    token: str | None = field(default=None, repr=False)


def to_argv(options: Mapping[str, object]) -> list[str]:
    """Keyword options as `mastfs mount` flags: True is a bare flag, False and None leave it
    out, a list or tuple repeats it, a dict is `KEY=VALUE` criteria."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, Mapping):
            argv.extend(x for k, v in value.items() for x in (flag, f"{k}={v}"))
        elif isinstance(value, list | tuple | set | frozenset):
            argv.extend(x for v in value for x in (flag, str(v)))
        else:
            argv.extend((flag, str(value)))
    return argv


def parse(options: Mapping[str, object], allowed: frozenset[str]) -> argparse.Namespace:
    """`options` checked by the parser of `mastfs mount`; `ValueError` naming a bad one."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r} (expected one of: {', '.join(sorted(allowed))})"
        )
    parser = cli.build_parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            # The mount point is a placeholder: only the options are wanted here.
            return parser.parse_args(["mount", *to_argv(options), "MOUNTPOINT"])
    except SystemExit:
        lines = errors.getvalue().strip().splitlines() or ["invalid options"]
        message = lines[-1].partition(" error: ")[2] or lines[-1]
        raise ValueError(_python_names(message)) from None


def _python_names(message: str) -> str:
    """`argument --cache-size: invalid size 'x'` -> `argument cache_size: invalid size 'x'`."""
    return _FLAG.sub(lambda m: m.group(1).replace("-", "_"), message)


def mount_args(options: Mapping[str, object]) -> argparse.Namespace:
    """`options` of `mastfs mount` checked as the CLI would before mounting (query, selection,
    server); `ValueError` naming a bad one."""
    args = parse(options, MOUNT_OPTIONS)
    try:
        cli.query_from_args(args)
        cli.selection_from_args(args)
        cli.server_from_args(args)
        cli.crds_from_args(args)
    except cli.UsageError as exc:
        raise ValueError(_python_names(str(exc))) from None
    return args


def crds_settings(options: Mapping[str, object]) -> dict[str, CrdsServer] | None:
    """The CRDS servers of `references=True` (None without), `crds_server` checked as the CLI
    checks `--crds-server`; `ValueError` naming a bad one."""
    args = parse(options, REFERENCE_OPTIONS)
    try:
        return cli.crds_from_args(args)
    except cli.UsageError as exc:
        raise ValueError(_python_names(str(exc))) from None


def reader_settings(options: Mapping[str, object]) -> Settings:
    """The settings of a process that reads products (the fsspec filesystem, a selection
    table); the token is read here, from `token_file` or `$MAST_API_TOKEN`."""
    args = parse(options, READER_OPTIONS)
    try:
        query = cli.query_from_args(args) if QUERY_OPTIONS & set(options) else None
        selection = cli.selection_from_args(args)
        server = cli.server_from_args(args)
        token = cli.token_from_args(args)
        resolver = cli.resolver_from_args(args)
    except cli.UsageError as exc:
        raise ValueError(_python_names(str(exc))) from None
    return Settings(
        query=query,
        selection=selection,
        layout=args.layout,
        server=server,
        cache_dir=cli.cache_dir_from_args(args),
        cache_size=args.cache_size,
        metadata_ttl=args.metadata_ttl,
        limits=cli.limits_from_args(args),
        resolver=resolver,
        token=token,
    )
