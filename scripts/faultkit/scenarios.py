"""The engine: each kind of case run against real mounts of the faulty simulator.

A `World` owns one run's state: its temporary directory, the faulty simulator, the reference
(a second simulator), the mounts' `--timeout`, the sizes and the patience granted to a reader.
`run_case(world, case, reader)` returns an `Outcome`: corrupt bytes (every read compared with the
reference), errors, the slowest read of the faulty phase, and whether the same mount read the
product (and a product it had not read) correctly once the fault was cleared.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mastfs.sim.catalog import default_catalog

from . import cases as C
from .common import MASTFS, PROGRAM, TIMEOUT_SLACK, MatrixError, MiB
from .mounts import Mount, mounted, run, small_filesystem, tail
from .readers import Reader, Tally, run_all, spec
from .sim import Reference, Simulator, mount_path


@dataclass
class Outcome:
    """One row of the table."""

    case: str
    reader: str
    corrupt: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    slowest: float = 0.0
    limit: float = 0.0
    recovered: str = "no"
    wedged: int = 0
    unfinished: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None
    # Damaged blocks `mastfs cache verify` found (the kill and bit-rot cases), else None.
    verify_damaged: int | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def within_limit(self) -> bool:
        return self.wedged == 0 and self.slowest <= self.limit

    @property
    def recovered_ok(self) -> bool:
        return self.recovered.startswith("yes")

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "reader": self.reader, "corrupt": self.corrupt,
            "errors": self.errors, "slowest_s": round(self.slowest, 3), "limit_s": self.limit,
            "recovered": self.recovered, "wedged": self.wedged, "unfinished": self.unfinished,
            "notes": self.notes, "seconds": round(self.seconds, 1), "skipped": self.skipped,
            "verify_damaged": self.verify_damaged,
        }  # fmt: skip


class World:
    """One run: simulators, reference bytes, products, fresh directories. See `world()`."""

    def __init__(
        self, tmp: Path, faulty: Simulator, reference: Reference, timeout: float,
        sizes: C.Sizes, patience: float, stall_seconds: float | None,
        recover_after_hang: bool = True,
    ) -> None:  # fmt: skip
        self.tmp = tmp
        self.sim = faulty
        self.ref = reference
        self.timeout = timeout
        self.sizes = sizes
        self.patience = patience
        self.stall_seconds = stall_seconds
        # False: a run whose reader hung is not given its recovery reads (they would wait for
        # the same stalled request); the tests, where such a run fails anyway, save the time.
        self.recover_after_hang = recover_after_hang
        self._names = itertools.count()
        files = default_catalog().files()
        self.products = sorted(
            (f.uri, f.size)
            for f in files
            if str(f.proposal_id) == PROGRAM and sizes.min_product <= f.size <= sizes.max_product
        )
        if len(self.products) < 2:
            raise MatrixError(f"program {PROGRAM} has fewer than 2 products of this size")

    def fresh(self, stem: str) -> Path:
        return self.tmp / f"{stem}-{next(self._names)}"

    def knobs(self, case: C.Case) -> dict[str, Any]:
        knobs = case.knobs_for(self.timeout)
        if "stall_seconds" in knobs and self.stall_seconds is not None:
            knobs["stall_seconds"] = self.stall_seconds
        return knobs

    def deadline(self) -> float:
        return time.monotonic() + self.patience

    def mount(self, cache: Path, stack: ExitStack, stem: str = "mnt") -> Mount:
        return stack.enter_context(mounted(self.fresh(stem), cache, self.sim.url, self.timeout))

    def reader(
        self, mount: Mount, uri: str, mode: str, generation: int = 0, seed: int = 0,
        pause_after: int | None = None, count: int | None = None,
    ) -> Reader:  # fmt: skip
        """A reader child of `uri` in `mount`, checked against the reference at `generation`."""
        size = dict(self.products)[uri]
        args = spec(
            mount.product(mount_path(uri)), mode, size, self.ref.path(uri, generation),
            count=self.sizes.random_reads if count is None else count, seed=seed,
            pause_after=pause_after,
        )  # fmt: skip
        return Reader(args, abort=mount.kill9)

    def read(self, mount: Mount, uri: str, mode: str, generation: int = 0, seed: int = 0) -> Tally:
        return self.reader(mount, uri, mode, generation, seed).finish(self.deadline())


@contextmanager
def world(
    tmp: Path, timeout: float, sizes: C.Sizes, patience: float,
    stall_seconds: float | None = None, recover_after_hang: bool = True,
) -> Iterator[World]:  # fmt: skip
    """Two simulators (faulty, reference) in processes of their own, stopped at the end."""
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        faulty = Simulator(tmp / "sim-faulty.log")
        stack.callback(faulty.stop)
        honest = Simulator(tmp / "sim-reference.log")
        stack.callback(honest.stop)
        yield World(
            tmp, faulty, Reference(honest, tmp / "reference"), timeout, sizes, patience,
            stall_seconds, recover_after_hang,
        )  # fmt: skip


def run_case(w: World, case: C.Case, reader: str, product: int = 0) -> Outcome:
    """Run `case` with `reader` ("seq" or "random") on product number `product` of the run."""
    out = Outcome(case.name, reader, limit=w.timeout + TIMEOUT_SLACK)
    if case.kind == C.SKIPPED:
        out.skipped = case.what
        return out
    started = time.monotonic()
    uri = w.products[product % len(w.products)][0]
    spare = w.products[(product + 1) % len(w.products)][0]
    try:
        _KINDS[case.kind](w, case, reader, uri, spare, out)
    except MatrixError as exc:
        out.notes.append(f"could not run: {exc}")
        out.recovered = "no"
    finally:
        w.sim.clear_faults()
        w.sim.change(uri, 0)
        out.seconds = time.monotonic() - started
    return out


def _take(out: Outcome, tally: Tally, timed: bool = True) -> None:
    """A faulty phase's tally into the row (its errors and slowest read count)."""
    out.corrupt += tally.corrupt
    for name, n in tally.errors.items():
        out.errors[name] = out.errors.get(name, 0) + n
    if timed:
        out.slowest = max(out.slowest, tally.slowest)
    out.wedged += tally.wedged
    out.unfinished += tally.unfinished


def _clean(tally: Tally) -> bool:
    return not (tally.error_count or tally.corrupt or tally.wedged or tally.unfinished)


def _recover(
    w: World, mounts: list[Mount], uri: str, spare: str, out: Outcome, generation: int = 0,
    label: str = "yes",
) -> None:  # fmt: skip
    """Faults cleared: each mount reads the product, then one it never read, whole and exact."""
    w.sim.clear_faults()
    if out.wedged and not w.recover_after_hang:
        out.recovered = "not tried (a read hung)"
        return
    ok = True
    for mount in mounts:
        for target, gen in ((uri, generation), (spare, 0)):
            tally = w.read(mount, target, C.SEQ, gen)
            out.corrupt += tally.corrupt
            if not _clean(tally):
                ok = False
                out.notes.append(f"recovery read of {target.rsplit('/', 1)[1]}: {_brief(tally)}")
    out.recovered = label if ok else "no"


def _brief(tally: Tally) -> str:
    parts = [f"{tally.reads} reads", f"{tally.corrupt} corrupt"]
    parts += [f"{n} {name}" for name, n in sorted(tally.errors.items())]
    if tally.wedged:
        parts.append("wedged")
    if tally.unfinished:
        parts.append("unfinished")
    return ", ".join(parts)


def _readers(w: World, mount: Mount, uri: str, reader: str, n: int, gen: int = 0) -> Tally:
    started = [w.reader(mount, uri, reader, gen, seed=i) for i in range(n)]
    return run_all(started, w.deadline())


def _half(w: World, reader: str, uri: str) -> int:
    size = dict(w.products)[uri]
    return size // MiB // 2 if reader == C.SEQ else w.sizes.random_reads // 2


# -- the kinds ---------------------------------------------------------------------------------


def _knob(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    with ExitStack() as stack:
        mount = w.mount(w.fresh("cache"), stack)
        w.sim.faults(w.knobs(case))
        _take(out, w.read(mount, uri, reader))
        _recover(w, [mount], uri, spare, out)


def _concurrent(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    with ExitStack() as stack:
        mount = w.mount(w.fresh("cache"), stack)
        w.sim.faults(w.knobs(case))
        _take(out, _readers(w, mount, uri, reader, C.CONCURRENT_READERS))
        _recover(w, [mount], uri, spare, out)


def _change_before(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    with ExitStack() as stack:
        mount = w.mount(w.fresh("cache"), stack)
        # Some of version 0 cached first, so that stale blocks are there to be served wrongly.
        _take(out, w.reader(mount, uri, C.RANDOM, 0, count=8).finish(w.deadline()))
        w.sim.change(uri, 1)
        _take(out, w.read(mount, uri, reader, generation=1))
        _recover(w, [mount], uri, spare, out, generation=1)


def _change_between(
    w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome
) -> None:
    with ExitStack() as stack:
        mount = w.mount(w.fresh("cache"), stack)
        # The open file's reads must all be of version 0 (or fail): the reference is version 0.
        child = w.reader(mount, uri, reader, 0, pause_after=_half(w, reader, uri))
        if not child.wait_paused(w.deadline()):
            out.notes.append("the reader did not reach its pause")
        w.sim.change(uri, 1)
        child.resume()
        _take(out, child.finish(w.deadline()))
        _recover(w, [mount], uri, spare, out, generation=1)


def _change_during(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    with ExitStack() as stack:
        mount = w.mount(w.fresh("cache"), stack)
        w.sim.faults({"latency_ms": 300})
        child = w.reader(mount, uri, reader, 0)
        if not child.wait_reads(2, w.deadline()):
            out.notes.append("the reader did not make 2 reads")
        w.sim.change(uri, 1)  # the third read is in flight
        _take(out, child.finish(w.deadline()))
        _recover(w, [mount], uri, spare, out, generation=1)


def _kill(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    cache = w.fresh("cache")
    with ExitStack() as stack:
        mount = w.mount(cache, stack)
        if case.kind == C.KILL_READ:
            w.sim.faults({"latency_ms": 300})
        child = w.reader(mount, uri, reader, 0)
        if case.kind == C.KILL_READ:
            if not child.wait_reads(2, w.deadline()):
                out.notes.append("the reader did not make 2 reads")
        else:
            out.notes.append(_kill_when_writing(mount))
        mount.kill9()
        # Its reads until then are checked too; after the kill they fail (ENOTCONN).
        _take(out, child.finish(w.deadline()), timed=False)
    w.sim.clear_faults()
    with ExitStack() as stack:
        again = w.mount(cache, stack, "remount")
        tally = w.read(again, uri, reader, 0)
        _take(out, tally)
        if not _clean(tally):
            out.notes.append(f"read after remount: {_brief(tally)}")
        _recover(w, [again], uri, spare, out, label="yes (remount)" if _clean(tally) else "no")
    _, summary = _verify(cache)
    out.verify_damaged = _damaged(summary)
    out.notes.append(f"cache verify after the remount: {summary}")


def _kill_when_writing(mount: Mount) -> str:
    """Wait until the daemon has written at least 1 MiB of blocks; kill it then (caller)."""
    base = mount.daemon_written_bytes()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        written = mount.daemon_written_bytes() - base
        if written >= MiB:
            return f"killed after {written / MiB:.1f} MiB written"
        time.sleep(0.005)
    return "killed without seeing a write"


def _full_disk(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    with ExitStack() as stack:
        cache = stack.enter_context(small_filesystem(w.fresh("tmpfs"), w.sizes.disk_mib))
        mount = w.mount(cache, stack)
        _take(out, w.read(mount, uri, reader))
        _recover(w, [mount], uri, spare, out)
        used = shutil.disk_usage(cache)
        out.notes.append(f"cache disk {used.used / MiB:.1f} of {used.total / MiB:.0f} MiB used")


def _bit_rot(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    cache = w.fresh("cache")
    with ExitStack() as stack:
        first = w.mount(cache, stack)
        _take(out, w.read(first, uri, C.SEQ), timed=False)
    flipped = flip_bytes(cache)
    code, summary = _verify(cache)
    out.notes.append(f"{flipped} bytes flipped; cache verify exit {code}: {summary}")
    out.verify_damaged = _damaged(summary) if code == 1 else 0
    if flipped == 0 or not out.verify_damaged:
        out.notes.append("cache verify did not report the damage")
    with ExitStack() as stack:
        second = w.mount(cache, stack, "remount")
        _take(out, w.read(second, uri, reader))
        _recover(w, [second], uri, spare, out)


def _two_mounts(w: World, case: C.Case, reader: str, uri: str, spare: str, out: Outcome) -> None:
    cache = w.fresh("cache")
    with ExitStack() as stack:
        one = w.mount(cache, stack, "mnt-a")
        two = w.mount(cache, stack, "mnt-b")
        children = [w.reader(one, uri, reader, seed=1), w.reader(two, uri, reader, seed=2)]
        _take(out, run_all(children, w.deadline()))
        _recover(w, [one, two], uri, spare, out)


_KINDS = {
    C.KNOB: _knob,
    C.CONCURRENT: _concurrent,
    C.CHANGE_BEFORE: _change_before,
    C.CHANGE_BETWEEN: _change_between,
    C.CHANGE_DURING: _change_during,
    C.KILL_READ: _kill,
    C.KILL_WRITE: _kill,
    C.FULL_DISK: _full_disk,
    C.BIT_ROT: _bit_rot,
    C.TWO_MOUNTS: _two_mounts,
}


def flip_bytes(cache: Path, every: int = 256 * 1024) -> int:
    """Invert one byte every `every` bytes of each run file (`*.val`); how many were flipped."""
    flipped = 0
    for path in sorted((cache / "blocks").rglob("*.val")):
        with path.open("r+b") as f:
            size = f.seek(0, 2)
            for at in range(every // 2, size, every):
                f.seek(at)
                byte = f.read(1)
                f.seek(at)
                f.write(bytes([byte[0] ^ 0xFF]))
                flipped += 1
    return flipped


def _damaged(summary: str) -> int | None:
    found = re.search(r"(\d+) damaged", summary)
    return int(found.group(1)) if found else None


def _verify(cache: Path) -> tuple[int, str]:
    """`mastfs cache verify --cache-dir CACHE`: its exit status and its summary line."""
    done = run([*MASTFS, "cache", "verify", "--cache-dir", str(cache)], timeout=120)
    first = (done.stdout.strip().splitlines() or [tail(done.stderr)])[0]
    return done.returncode, re.sub(r"^\S+: ", "", first)
