"""`mastfs warm`: fetch a mount's files into its disk cache ahead of time, for offline work.

Files are read through the mount itself, a few at a time: a read fills the cache, with the
mount's token, versions and `--timeout`. How much of each file is on disk already comes from
its `user.mastfs.cached` attribute: a file wholly cached is skipped and the cached blocks of a
partly cached one come from the disk, so a run that was interrupted, run again, fetches only
what is missing. Before anything is read, the files' bytes are compared with the mount's cache
bound (`check_fits`, pure): a set that cannot be held at once is refused, since warming it
would evict its own first files. Progress goes to a `Reporter`: a redrawn line on a terminal,
one plain line per file otherwise.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from mastfs.progress import Progress
from mastfs.safetext import clean
from mastfs.selection import Selection, format_bytes, select
from mastfs.tree import HEADERS
from mastfs.xattrs import XATTR_CACHED, XATTR_PREFIX, product_from_xattrs

# Bytes asked of the mount per read call.
CHUNK = 1 << 20
DEFAULT_PARALLEL = 4
# How often a terminal's progress line is redrawn (seconds).
REDRAW = 0.25


class WarmError(Exception):
    """Nothing can be warmed; the message is one line for the user."""


@dataclass(frozen=True)
class File:
    path: Path
    name: str  # relative to the mount point, for messages
    size: int
    cached: int

    @property
    def needed(self) -> int:
        return max(0, self.size - self.cached)


@dataclass(frozen=True)
class Plan:
    files: list[File]  # to read
    complete: list[File]  # wholly cached already
    unreadable: int = 0  # exclusive-access files this login cannot read: left out

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files) + sum(f.size for f in self.complete)

    @property
    def needed_bytes(self) -> int:
        return sum(f.needed for f in self.files)

    @property
    def read_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        count = len(self.files) + len(self.complete)
        text = (
            f"{count} files, {format_bytes(self.total_bytes)}: "
            f"{format_bytes(self.needed_bytes)} to fetch, {len(self.complete)} files cached already"
        )
        if self.unreadable:
            text += (
                f"; {self.unreadable} exclusive-access files left out (not readable by this login)"
            )
        return text


def make_plan(files: Sequence[File], unreadable: int = 0) -> Plan:
    return Plan([f for f in files if f.needed > 0], [f for f in files if f.needed == 0], unreadable)


def check_fits(plan: Plan, cache_limit: int | None) -> None:
    """Refuse a set of files the cache cannot hold at once (`WarmError`)."""
    if cache_limit is None or plan.total_bytes <= cache_limit:
        return
    count = len(plan.files) + len(plan.complete)
    raise WarmError(
        f"the {count} files hold {format_bytes(plan.total_bytes)} "
        f"({format_bytes(plan.needed_bytes)} not cached yet), more than the cache's bound of "
        f"{format_bytes(cache_limit)}: warm fewer files, or remount with a larger --cache-size"
    )


# -- which files ---------------------------------------------------------------------------------


def _walk(start: Path) -> Iterator[Path]:
    try:
        st = os.lstat(start)
    except OSError as exc:
        raise WarmError(f"cannot read {start}: {exc.strerror}") from exc
    if stat.S_ISREG(st.st_mode):
        yield start
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    for folder, dirs, names in os.walk(start):
        dirs.sort()
        for name in sorted(names):
            yield Path(folder) / name


def _xattrs(path: Path) -> dict[str, str]:
    values = {}
    for name in os.listxattr(path):
        if name.startswith(XATTR_PREFIX):
            values[name] = os.getxattr(path, name).decode(errors="replace")
    return values


def collect(
    mountpoint: Path, paths: Sequence[Path], selection: Selection | None
) -> tuple[list[File], int]:
    """The distinct product files under `paths` (the whole mount without any) that
    `selection` keeps and this login may read, with how much of each is cached; and how many
    it may not read (`WarmError` for a path outside the mount or one that cannot be read)."""
    root = Path(os.path.abspath(mountpoint))
    starts = [Path(os.path.abspath(p)) for p in paths] or [root]
    for start in starts:
        if start != root and not start.is_relative_to(root):
            raise WarmError(f"{start} is not inside the mount {mountpoint}")
    seen: set[int] = set()
    files: list[File] = []
    unreadable = 0
    for start in starts:
        for path in _walk(start):
            if path.is_relative_to(root / HEADERS):
                continue  # header texts: derived from the products, not products
            try:
                st = os.stat(path)
                if st.st_ino in seen:
                    continue  # a product linked from several datasets: read once
                seen.add(st.st_ino)
                values = _xattrs(path)
                if XATTR_PREFIX + "uri" not in values:
                    continue  # manifest.html, selection.csv
                if selection is not None:
                    if not select([product_from_xattrs(values, path.name)], selection):
                        continue
                if values.get(XATTR_PREFIX + "readable") == "no":
                    unreadable += 1
                    continue
                cached = int(os.getxattr(path, XATTR_CACHED))
            except OSError as exc:
                raise WarmError(f"cannot read {path}: {exc.strerror}") from exc
            except ValueError:
                cached = 0
            files.append(File(path, str(path.relative_to(root)), st.st_size, cached))
    return files, unreadable


# -- reading ---------------------------------------------------------------------------------


class Reporter(Protocol):
    def started(self, plan: Plan) -> None: ...
    def tick(self, progress: Progress) -> None: ...
    def file_done(self, f: File, error: str | None, progress: Progress) -> None: ...
    def finished(self) -> None: ...


class LineReporter:
    """One plain line per file (not a terminal: logs, pipes, cron)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def started(self, plan: Plan) -> None:
        print(clean(f"warming {plan.describe()}"), file=self.out, flush=True)

    def tick(self, progress: Progress) -> None:
        pass

    def file_done(self, f: File, error: str | None, progress: Progress) -> None:
        if error is None:
            line = f"warmed {f.name} ({format_bytes(f.size)})"
        else:
            line = f"failed {f.name}: {error}"
        print(clean(line), file=self.out, flush=True)

    def finished(self) -> None:
        pass


class TerminalReporter(LineReporter):
    """A progress line redrawn in place; failures are printed above it."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        super().__init__(out)
        self._last = ""

    def _draw(self, text: str) -> None:
        pad = " " * max(0, len(self._last) - len(text))
        print(f"\r{text}{pad}", end="", file=self.out, flush=True)
        self._last = text

    def tick(self, progress: Progress) -> None:
        self._draw(progress.line())

    def file_done(self, f: File, error: str | None, progress: Progress) -> None:
        if error is not None:
            self._draw("")
            print(clean(f"\rfailed {f.name}: {error}"), file=self.out, flush=True)
        self._draw(progress.line())

    def finished(self) -> None:
        print(file=self.out, flush=True)


@dataclass
class Outcome:
    warmed: int
    failed: int
    bytes_read: int
    interrupted: bool = False


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


def _read(f: File, done: _Counter, stop: threading.Event) -> None:
    """Read the whole file through the mount; its pages are not kept in memory afterwards."""
    fd = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        buffer = memoryview(bytearray(CHUNK))
        while not stop.is_set():
            n = os.readv(fd, [buffer])
            if n == 0:
                break
            done.add(n)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(plan: Plan, reporter: Reporter, parallel: int = DEFAULT_PARALLEL) -> Outcome:
    """Read the plan's files, `parallel` at a time; Ctrl-C stops after the reads in flight."""
    done = _Counter()
    stop = threading.Event()
    started = time.monotonic()
    files_done = 0
    outcome = Outcome(0, 0, 0)
    total = len(plan.files)

    def progress() -> Progress:
        return Progress(files_done, total, done.value, plan.read_bytes, time.monotonic() - started)

    reporter.started(plan)
    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="warm")
    try:
        pending: dict[Future[None], File] = {
            pool.submit(_read, f, done, stop): f for f in plan.files
        }
        while pending:
            finished, _ = wait(pending, timeout=REDRAW, return_when=FIRST_COMPLETED)
            for future in finished:
                f = pending.pop(future)
                files_done += 1
                exc = future.exception()
                if exc is None:
                    outcome.warmed += 1
                    reporter.file_done(f, None, progress())
                else:
                    outcome.failed += 1
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    reporter.file_done(f, why, progress())
            reporter.tick(progress())
    except KeyboardInterrupt:
        stop.set()
        outcome.interrupted = True
        for future in pending:
            future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        reporter.finished()
    outcome.bytes_read = done.value
    return outcome
