"""The fault matrix of issue 13 (scripts/fault-matrix), one test per case and reader, smaller.

The cases are scripts/faultkit's own (`cases.CASES`), run by its engine: two simulators in
processes of their own (the faulty one the mount reads from, an honest reference for the
expected bytes), real `mastfs mount` daemons, readers in child processes. Every case must show
0 corrupt bytes and the same mount reading correctly once the fault is cleared (after a remount
for the kill -9 cases); cases whose faults the product absorbs must show no error at all.

No wall-clock bound here: a stalled read must return (data or EIO) rather than hang, which the
readers' patience (far above the mounts' `--timeout`) checks: a stalled body is abandoned
after the low-speed window and resumed on a fresh connection, and every read has a deadline.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastfs.sim.faults import FaultSettings
from scripts.faultkit import cases
from scripts.faultkit.scenarios import World, flip_bytes, run_case, world

pytestmark = pytest.mark.mount

TIMEOUT = 3.0  # the mounts' --timeout
# A reader still busy this long (almost 7 x --timeout) is killed and its run fails.
PATIENCE = 20.0
# Longer than PATIENCE: a read that waits for the stall to end instead of giving up on the
# attempt at --timeout and resuming is caught hanging.
STALL_SECONDS = 90.0


def _params() -> list[object]:
    out: list[object] = []
    for index, case in enumerate(cases.CASES):
        marks: list[pytest.MarkDecorator] = []
        if case.needs_root and os.geteuid() != 0:
            marks.append(pytest.mark.skip(reason="mounts a tmpfs: needs root"))
        for reader in case.readers:
            out.append(pytest.param(case, reader, index, id=f"{case.name}-{reader}", marks=marks))
    return out


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    with world(
        root, TIMEOUT, cases.TEST_SIZES, PATIENCE, STALL_SECONDS, recover_after_hang=False
    ) as w:
        yield w


@pytest.mark.parametrize(("case", "reader", "index"), _params())
def test_case(matrix: World, case: cases.Case, reader: str, index: int) -> None:
    out = run_case(matrix, case, reader, product=index)
    detail = f"{out.to_json()}"
    assert out.corrupt == 0, detail
    # Every read returned, with data or an error, within the patience: none hung.
    assert out.wedged == 0 and out.unfinished == 0, detail
    if not case.errors_ok:
        assert out.errors == {}, detail
    assert out.recovered_ok, detail
    if case.kind in (cases.KILL_READ, cases.KILL_WRITE):
        # A crash leaves no block whose bytes its checksums disprove.
        assert out.verify_damaged == 0, detail
    if case.kind == cases.BIT_ROT:
        assert out.verify_damaged, f"mastfs cache verify did not report the flipped bytes: {detail}"


def test_every_knob_has_a_case() -> None:
    """A knob the simulator grows gets a case (or is named as a modifier or irrelevant)."""
    covered = {knob for case in cases.CASES for knob in case.knobs}
    knobs = {f.name for f in dataclasses.fields(FaultSettings)}
    missing = knobs - covered - cases.MODIFIERS - cases.NOT_FOR_READS
    assert not missing, f"no fault-matrix case sets {sorted(missing)}"
    skipped = {case.name for case in cases.CASES if case.kind == cases.SKIPPED}
    assert {name.replace("_", "-") for name in cases.NOT_FOR_READS} <= skipped


def test_flip_bytes_damages_every_run_file(tmp_path: Path) -> None:
    """The bit-rot case's damage is real: each run file changes, one byte per 256 KiB."""
    blocks = tmp_path / "blocks" / "ab"
    blocks.mkdir(parents=True)
    original = bytes(range(256)) * 4096  # 1 MiB
    (blocks / "0-x.val").write_bytes(original)
    assert flip_bytes(tmp_path) == 4
    damaged = (blocks / "0-x.val").read_bytes()
    assert sum(a != b for a, b in zip(original, damaged, strict=True)) == 4
