"""The selection state of one mount: available products + a selection -> tree and views.

A `Snapshot` is immutable and replaced by one assignment, so the tree, `selection.csv` and
`manifest.html` always change together; a reader holds whichever snapshot it started with. The
manifest also shows fetch errors met during the mount's life, so it is rendered lazily and cached
per (snapshot, error version). Pure: no I/O, no trio, no FUSE.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from mastfs import selection as sel_mod
from mastfs import tree as tree_mod
from mastfs import views
from mastfs.calibration import Calibration
from mastfs.model import Product, User
from mastfs.references import References


@dataclass(frozen=True)
class Snapshot:
    generation: int
    selection: sel_mod.Selection
    # The selected rows, then the reference files they name (`references/`, when shown).
    selected: list[Product]
    tree: tree_mod.Tree
    summary: sel_mod.Summary
    csv: bytes
    # Directories and virtual files show the newest product's time (archive metadata, not
    # the clock); computed once here, read for every directory attribute.
    mtime: float


class MountState:
    """Everything the filesystem shows, except the bytes of products."""

    def __init__(
        self,
        available: Sequence[Product],
        selection: sel_mod.Selection,
        layout: str,
        user: User | None,
        readable_proposals: set[str] | None = None,
    ) -> None:
        self.available = list(available)
        self.layout = layout
        self.user = user
        # None means "not probed": exclusive-access files are then assumed unreadable
        # unless a token is set; reads still learn the truth from the archive.
        self.readable_proposals = set(readable_proposals or ())
        self._errors: dict[str, str] = {}
        self._errors_version = 0
        self._lock = threading.Lock()
        self._manifest_key: tuple[int, int] = (-1, -1)
        self._manifest = b""
        # The calibration references found for the products (`--references`), None without.
        self.calibration: Calibration | None = None
        self.snapshot = self._build(selection, generation=1)

    def can_read(self, product: Product) -> bool:
        return not product.is_exclusive or product.proposal_id in self.readable_proposals

    def _build(self, selection: sel_mod.Selection, generation: int) -> Snapshot:
        selected = sel_mod.select(self.available, selection)
        available = self.available
        if self.calibration is not None:
            refs = self.calibration.for_selection(selected)
            tree = tree_mod.build_tree(selected, self.layout, references=refs)
            available = [*available, *self.calibration.files.values()]
            selected = [*selected, *refs]
        else:
            tree = tree_mod.build_tree(selected, self.layout)
        summary = sel_mod.summarize(available, selected, self.can_read)
        csv = views.selection_csv(selected, tree)
        mtime = max((p.mtime for p in selected), default=0.0)
        return Snapshot(generation, selection, selected, tree, summary, csv, mtime)

    def add_calibration(self, calibration: Calibration) -> Snapshot:
        """Show the reference files `calibration` found, with the products naming them (before
        the mount serves: the new tree is swapped in as a re-selection would be)."""
        self.calibration = calibration
        return self.reselect(self.snapshot.selection)

    def references_of(self, dataURI: str) -> References | None:
        """What a product's primary header names, when references are shown and it was read."""
        return self.calibration.named.get(dataURI) if self.calibration is not None else None

    def reselect(self, selection: sel_mod.Selection) -> Snapshot:
        """Compute the new snapshot (slow for big programs) and swap it in at once."""
        new = self._build(selection, generation=0)
        with self._lock:
            # Numbered at the swap, not before the build: two re-selections computed at the
            # same time must not share a generation, which keys the cached manifest.
            new = replace(new, generation=self.snapshot.generation + 1)
            self.snapshot = new
        return new

    def record_error(self, dataURI: str, message: str) -> None:
        with self._lock:
            if self._errors.get(dataURI) != message:
                self._errors[dataURI] = message
                self._errors_version += 1

    def clear_error(self, dataURI: str) -> None:
        if dataURI not in self._errors:
            return  # every successful read comes here: no lock unless there is an error
        with self._lock:
            if self._errors.pop(dataURI, None) is not None:
                self._errors_version += 1

    def errors(self) -> list[tuple[str, str]]:
        """The fetch errors shown now, (dataURI, message), oldest first."""
        with self._lock:
            return list(self._errors.items())

    def manifest_current(self, snapshot: Snapshot | None = None) -> bool:
        """Whether `manifest()` would answer from its cache (rendering takes ~50 ms for 10,000
        products: callers on an event loop render it in a worker thread first)."""
        snap = snapshot or self.snapshot
        with self._lock:
            return self._manifest_key == (snap.generation, self._errors_version)

    def manifest(self, snapshot: Snapshot | None = None) -> bytes:
        snap = snapshot or self.snapshot
        with self._lock:
            key = (snap.generation, self._errors_version)
            if key == self._manifest_key:
                return self._manifest
            errors = dict(self._errors)
        notes = self.calibration.notes() if self.calibration is not None else []
        body = views.manifest_html(
            snap.selected, snap.tree, snap.summary, self.user, self.can_read, errors, notes=notes
        )
        with self._lock:
            if snap is self.snapshot:
                self._manifest_key, self._manifest = key, body
        return body

    def virtual_content(self, name: str, snapshot: Snapshot | None = None) -> bytes:
        snap = snapshot or self.snapshot
        if name == tree_mod.SELECTION_CSV:
            return snap.csv
        if name == tree_mod.MANIFEST:
            return self.manifest(snap)
        raise KeyError(name)
