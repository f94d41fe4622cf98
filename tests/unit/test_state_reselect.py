"""Re-selections computed at the same time (two `mastfs select` at once) stay consistent."""

from __future__ import annotations

import threading

from mastfs import selection as sel_mod
from mastfs.selection import Selection, format_summary
from mastfs.state import MountState, Snapshot
from tests.support.sample_products import products
from tests.support.views import parse_manifest


class BothBuildAtOnce(MountState):
    """Each re-selection's build waits for the other's, as two worker threads may run."""

    barrier: threading.Barrier | None = None

    def _build(self, selection: sel_mod.Selection, generation: int) -> Snapshot:
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        return super()._build(selection, generation)


def test_concurrent_reselections_do_not_share_a_generation() -> None:
    state = BothBuildAtOnce(products(), Selection(), "nested", None)
    first_manifest = state.manifest()
    state.barrier = threading.Barrier(2)
    results: list[Snapshot] = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(state.reselect(s)))
        for s in (Selection.build(levels="3"), Selection.build(groups="CAL"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 2
    assert sorted(r.generation for r in results) == [2, 3]
    assert state.snapshot is max(results, key=lambda r: r.generation)
    # The manifest is the current snapshot's, never one cached for the other selection.
    for snap in (results[0], results[1], state.snapshot):
        manifest = state.manifest(snap) if snap is not state.snapshot else state.manifest()
        assert parse_manifest(manifest).summary == format_summary(snap.summary)
    assert state.manifest() != first_manifest
