"""`mastfs cache verify`: check a whole cache directory, as `cvmfs_fsck` does for CVMFS.

Every block row is read and proven by its checksums; rows whose run file is gone, rows mastfs
never writes (pickles, paths outside the cache, blocks without checksums) and run files no row
points to are reported. `repair` drops what is damaged (the next read fetches it again) and
deletes orphan files. Safe while mounts use the directory: reads go through diskcache like a
mount's, and repairs delete through it. Blocking.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mastfs.cache import checksums
from mastfs.cache.runfiles import Stored, run_name
from mastfs.cache.store import DATABASE, BlockIndex
from mastfs.private import confined

# diskcache's value modes (diskcache.core): only these two ever hold a block of ours.
_MODE_BINARY = 2


@dataclass
class Report:
    directory: Path
    blocks: int = 0
    bytes: int = 0
    ok: int = 0
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.missing or self.foreign or self.orphans)

    def lines(self) -> list[str]:
        out = [
            f"{self.directory}: {self.blocks} blocks checked ({self.bytes / 2**30:.2f} GiB): "
            f"{self.ok} ok, {len(self.damaged)} damaged, {len(self.missing)} missing, "
            f"{len(self.foreign)} foreign rows; {len(self.orphans)} orphan files"
        ]
        for key in self.damaged[:10]:
            out.append(f"  damaged: {key}")
        for key in self.foreign[:10]:
            out.append(f"  foreign row: {key!r}")
        if self.repaired:
            out.append("repaired: damaged and foreign rows dropped, orphan files deleted")
        elif not self.clean:
            out.append("run again with --repair to drop them (they are fetched again when read)")
        return out


class VerifyError(Exception):
    """The directory cannot be checked; one line for the user."""


def verify(
    cache_dir: Path, repair: bool = False, progress: Callable[[int, int], None] | None = None
) -> Report:
    """Check (and with `repair`, fix) the block store under `cache_dir`."""
    directory = Path(cache_dir) / "blocks"
    if not (directory / DATABASE).is_file():
        raise VerifyError(f"{cache_dir} holds no mastfs block cache ({directory / DATABASE})")
    index = BlockIndex(directory, size_limit=None)
    report = Report(directory)
    try:
        rows = _rows(directory / DATABASE)
        referenced: set[str] = set()
        total = len(rows)
        for n, (key, mode, filename) in enumerate(rows):
            if progress is not None and n % 256 == 0:
                progress(n, total)
            kind = _kind(key)
            if kind == "m" and mode != _MODE_BINARY:
                continue  # a product record (JSON text in the row)
            if kind != "b" or mode != _MODE_BINARY or not filename:
                report.foreign.append(key)
                continue
            try:
                ref = Stored.from_filename(filename)
                run = run_name(filename)
                confined(directory, run)
            except ValueError:
                report.foreign.append(key)
                continue
            referenced.add(run)
            size = ref.size
            report.blocks += 1
            (data,) = index.runs.read_many([ref])
            if data is None:
                report.missing.append(key)
                continue
            sums = ref.checksums
            if sums is None or not checksums.verify(key, size, sums, data):
                report.damaged.append(key)
                continue
            report.ok += 1
            report.bytes += size
        report.orphans = [
            path
            for path in sorted(directory.rglob("*.val"))
            if str(path.relative_to(directory)) not in referenced
        ]
        if repair:
            for key in [*report.damaged, *report.missing, *report.foreign]:
                index.db.delete(key, retry=True)
            for path in report.orphans:
                path.unlink(missing_ok=True)
            report.repaired = True
    finally:
        index.close()
    return report


def _rows(database: Path) -> list[tuple[str, int, str | None]]:
    """(key, mode, filename) of every row, read straight from SQLite (no value decoded)."""
    uri = f"file:{database}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=60) as db:
        return [
            (str(key), int(mode), filename)
            for key, mode, filename in db.execute("SELECT key, mode, filename FROM Cache")
        ]


def _kind(key: str) -> str:
    try:
        value = json.loads(key)
    except ValueError:
        return ""
    return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else ""
