"""The calibration references of a selection: which products name which CRDS reference files,
and those files as products of the mount (`references/`).

`Calibration` is what the reference discovery (`discovery.py`) found: each scanned product's
`references.References` (its `R_*` names and CRDS context), the reference files CRDS has, as
`Product`s (`reference_product`: URI `crds:{observatory}/{name}`, category CALIBRATION, size
from CRDS), and those it does not have or could not be asked for, with the reason. A
reference named by many products is one product. `for_selection` gives the references of the
products selected now, so a re-selection shows the references of what it selects (of the
products whose headers were read at mount time). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mastfs import crds
from mastfs.model import PUBLIC, REFERENCE_PROJECT, Product
from mastfs.references import References

CATEGORY = "CALIBRATION"
# The folder `dataset` of a reference file's row (selection.csv's Dataset column, `mastfs ls`).
FOLDER = "references"
# Names listed in one warning or manifest line, at most.
SHOWN_NAMES = 5


@dataclass(frozen=True)
class Calibration:
    """What the selected products' primary headers name, and what CRDS has of it."""

    # Product dataURI -> what its primary header names (products with a CRDS mission only).
    named: Mapping[str, References] = field(default_factory=dict)
    # Product dataURI -> the CRDS observatory its references belong to.
    observatories: Mapping[str, str] = field(default_factory=dict)
    # Reference URI -> the reference file as a product (those CRDS answered for).
    files: Mapping[str, Product] = field(default_factory=dict)
    # Reference URI -> why it is not shown (not on CRDS, CRDS unavailable).
    missing: Mapping[str, str] = field(default_factory=dict)
    # Products whose primary header could not be read (they name nothing here).
    unread: int = 0
    # Reference URIs in `files` that CRDS did not answer for, shown as the cache recorded them
    # (an offline remount): their reads are served by the cache alone.
    from_cache: frozenset[str] = frozenset()

    def uris_of(self, dataURI: str) -> list[str]:
        """The reference URIs a product names, in header order, each once."""
        refs = self.named.get(dataURI)
        observatory = self.observatories.get(dataURI)
        if refs is None or observatory is None:
            return []
        return list(dict.fromkeys(crds.reference_uri(observatory, n) for n in refs.files.values()))

    def for_selection(self, selected: Iterable[Product]) -> list[Product]:
        """The reference files the `selected` products name, each once, sorted by name."""
        found: dict[str, Product] = {}
        for p in selected:
            for uri in self.uris_of(p.dataURI):
                ref = self.files.get(uri)
                if ref is not None:
                    found.setdefault(uri, ref)
        return sorted(found.values(), key=lambda r: (r.productFilename, r.dataURI))

    def notes(self) -> list[str]:
        """Lines for the manifest and the mount's warning: what is missing, and why."""
        out = []
        by_reason: dict[str, list[str]] = {}
        for uri, reason in sorted(self.missing.items()):
            by_reason.setdefault(reason, []).append(crds.split_uri(uri)[1])
        for reason, names in by_reason.items():
            shown = ", ".join(names[:SHOWN_NAMES])
            more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
            noun = "reference file" if len(names) == 1 else "reference files"
            out.append(f"{len(names)} {noun} not in references/ ({reason}): {shown}{more}")
        if self.from_cache:
            n = len(self.from_cache)
            noun = "reference file" if n == 1 else "reference files"
            out.append(f"{n} {noun} shown as the cache recorded them (CRDS did not answer)")
        if self.unread:
            noun = "product's" if self.unread == 1 else "products'"
            out.append(
                f"references: the primary headers of {self.unread} {noun} could not be read; "
                "their references are not listed"
            )
        return out


def reference_product(
    server: crds.CrdsServer, name: str, size: int, reftypes: Iterable[str], mtime: float = 0.0
) -> Product:
    """The product of one reference file on `server`; `reftypes` are the header keywords that
    name it. Its reference type is the one its name says (`jwst_niriss_readnoise_0120.fits`:
    READNOISE), else the keywords' (`R_READNO`: READNO; HST names say none)."""
    parts = name.rsplit(".", 1)[0].split("_")
    standard = len(parts) == 4 and parts[0] == server.observatory
    instrument = parts[1].upper() if standard else ""
    if standard:
        types = [parts[2].upper()]
    else:
        types = sorted({t.upper().removeprefix("R_") for t in reftypes})
    return Product(
        dataURI=crds.reference_uri(server.observatory, name),
        productFilename=name,
        obs_id=FOLDER,
        obs_collection=server.mission,
        size=size,
        dataRights=PUBLIC,
        productType=CATEGORY,
        productSubGroupDescription=",".join(types),
        description=f"CRDS reference file ({', '.join(types) or 'unknown type'})",
        project=REFERENCE_PROJECT,
        instrument_name=instrument,
        mtime=mtime,
    )


def reftypes_by_name(named: Mapping[str, References]) -> dict[str, set[str]]:
    """Reference name -> the keywords (`R_DARK`) that name it, over all products."""
    out: dict[str, set[str]] = {}
    for refs in named.values():
        for keyword, name in refs.files.items():
            out.setdefault(name, set()).add(keyword)
    return out
