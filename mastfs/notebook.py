"""The Python API for notebooks: a query mounted for the length of a `with`, and its selection
as an astropy Table.

`mounted` runs `mastfs mount` as a child process (pyfuse3 allows one mount per process, and
the notebook's kernel must not become the mount's daemon) and unmounts in `finally`, also when
the block raised. `selection_table` runs the query session that `mastfs ls` runs, in a worker
thread with its own trio loop (a notebook's kernel already runs an asyncio loop in its main
thread). Both take the options of `mastfs mount` by their Python names (`api.py`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from mastfs import api
from mastfs.archive_http import Limits
from mastfs.views import CSV_COLUMNS, selection_rows

log = logging.getLogger(__name__)

# Seconds `mounted` gives `mastfs umount`, and then `mastfs umount --lazy`.
UMOUNT_TIMEOUT = 60.0


class MountFailed(OSError):
    """`mastfs mount` or `mastfs umount` failed; the message is its own error line."""


def _mastfs(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [f"exit status {result.returncode}"])[-1]


@contextmanager
def mounted(mountpoint: str | os.PathLike[str] | None = None, **options: Any) -> Iterator[Path]:
    """Mount a query for the length of a `with` block; the mount point as a `pathlib.Path`.

        with mastfs.mounted(program=2734, recommended=True) as root:
            fits.getheader(next(root.glob("JWST/*/*_x1dints.fits")))

    `options` are those of `mastfs mount` (`program=`, `level=`, `server=`, `token_file=`,
    `cache_dir=`, `layout=`, ...); a bad one is a `ValueError` naming it. Without
    `mountpoint`, a fresh private directory is made and removed again. The token comes from
    `token_file` or `$MAST_API_TOKEN`, read by the child. Returns once the mount is ready
    (`MountFailed` with the mount's error otherwise); unmounts when the block ends, however
    it ends.
    """
    args = api.mount_args(options)
    limits = Limits(timeout=args.timeout, query_time=args.max_query_time)
    made = mountpoint is None
    where = tempfile.mkdtemp(prefix="mastfs-") if mountpoint is None else os.fspath(mountpoint)
    where = os.path.expanduser(where)
    path = Path(os.path.abspath(where))
    try:
        # The daemon reports ready only after its query: bounded by its own limits.
        start = _mastfs(
            "mount",
            *api.to_argv(options),
            str(path),
            timeout=limits.query_time + 2 * limits.timeout + 30,
        )
        for line in start.stderr.splitlines():
            if "warning:" in line:
                print(line, file=sys.stderr)
        if start.returncode != 0:
            raise MountFailed(_error_line(start))
        try:
            yield path
        finally:
            _unmount(path)
    finally:
        if made and not os.path.ismount(path):
            with contextlib.suppress(OSError):
                path.rmdir()


def _unmount(path: Path) -> None:
    result = _mastfs("umount", str(path), timeout=UMOUNT_TIMEOUT)
    if result.returncode == 0:
        return
    log.warning("mastfs umount %s: %s; detaching it lazily", path, _error_line(result))
    lazy = _mastfs("umount", "--lazy", str(path), timeout=UMOUNT_TIMEOUT)
    if lazy.returncode != 0:
        raise MountFailed(f"cannot unmount {path}: {_error_line(lazy)}")


def selection_table(**options: Any) -> Any:
    """A query's selection as an astropy `Table`: the columns of `selection.csv` (Dataset,
    Filename, Product Level, Suffix, Instrument, Filter / Grating, URI, Size, Access, Path)
    and `Readable` (whether this login may read the file).

        t = mastfs.selection_table(program=2734, recommended=True)
        t[t["Suffix"] == "_x1dints"]["Path", "Size"]

    `options` are those of `mastfs ls` (query, selection, `server`, `token_file`,
    `cache_dir`, `layout`, limits, `references`, `crds_server`); a bad one is a `ValueError`
    naming it, a query that cannot be answered an `OSError` with one line. With
    `references=True` the reference files the selected products name are rows too (category
    CALIBRATION, Path `references/NAME`).
    """
    from astropy.table import Table

    from mastfs.fsspec_fs import _LogProgress, private_cache_dir, query_session

    wanted = {k: v for k, v in options.items() if k in api.REFERENCE_OPTIONS}
    servers = api.crds_settings(wanted)
    settings = api.reader_settings({k: v for k, v in options.items() if k not in wanted})
    if settings.query is None:
        raise ValueError("no query given: pass program=, target=, collection=, ...")
    private_cache_dir(settings.cache_dir)

    async def run() -> Any:
        session = await query_session(settings)
        if servers is not None:
            from mastfs.discovery import references_of_session

            await references_of_session(
                session.state,
                server=settings.server,
                token=settings.token,
                cache_dir=settings.cache_dir,
                servers=servers,
                reporter=_LogProgress(),
                timeout=settings.limits.timeout,
                cache_size=settings.cache_size,
            )
        return session

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mastfs-query") as pool:
        session = pool.submit(lambda: trio.run(run)).result()
    state = session.state
    snap = state.snapshot
    rows = selection_rows(snap.selected, snap.tree)
    readable = {p.dataURI: state.can_read(p) for p in snap.selected}
    uri_column = CSV_COLUMNS.index("URI")
    columns: list[Any] = list(zip(*rows, strict=True)) or [[] for _ in CSV_COLUMNS]
    table = Table(
        [*columns, [readable[str(row[uri_column])] for row in rows]],
        names=[*CSV_COLUMNS, "Readable"],
    )
    table.meta["query"] = settings.query.describe()
    table.meta["selection"] = snap.selection.to_json()
    return table
