"""The CRDS host's files: every reference a catalog product names, and the contexts.

`CrdsFiles` reads the calibration of each JWST product of a catalog from its header values
(`crds.calibration`, the function that wrote its cards), so every name a header mentions is
served, and nothing else. A reference is a `SimFile` (`crds:jwst/<name>`) whose bytes
`content.py` generates per range: a primary header as CRDS files carry it (TELESCOP, INSTRUME,
REFTYPE, DETECTOR, the other selecting values, PEDIGREE, USEAFTER, AUTHOR, DESCRIP, FILENAME),
a SCI image (the detector frame, or a small array) and for some types a DQ image. A context
(`jwst_1241.pmap`) is a short text mapping: its header and the instrument mappings it selects.
The index is built on first use.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

from mastfs.sim import crds
from mastfs.sim.content import Image, Recipe, SimFile, hash_text, recipe_size

__all__ = ["CrdsFile", "CrdsFiles", "crds_uri"]

# Detector frames (columns, rows) by instrument and subarray; FULL when SUBARRAY does not select.
_FULL = {"miri": (1032, 1024)}
_SUBARRAYS = {"SUBSTRIP256": (2048, 256), "SUBSTRIP96": (2048, 96)}
_SMALL = (256, 300)
# References take effect from these dates (POSIX seconds): commissioning, then early science.
_USEAFTER = ("2022-05-01T00:00:00", "2022-07-12T00:00:00")
_USEAFTER_POSIX = (1651363200.0, 1657584000.0)
_INSTRUMENT_CARDS = {"fgs": "FGS"}
# The instrument mappings each context selects (CRDS mapping serials).
_IMAPS = {
    crds.CONTEXT: {"FGS": 123, "MIRI": 412, "NIRCAM": 398, "NIRISS": 287, "NIRSPEC": 421,
                   "SYSTEM": 45},
    crds.OLD_CONTEXT: {"FGS": 118, "MIRI": 401, "NIRCAM": 389, "NIRISS": 281, "NIRSPEC": 410,
                       "SYSTEM": 43},
}  # fmt: skip


def crds_uri(observatory: str, name: str) -> str:
    """The key of a CRDS file in the simulator's stats: `crds:jwst/jwst_nircam_dark_0342.fits`."""
    return f"crds:{observatory}/{name}"


def _shape(ref: crds.Reference) -> tuple[int, int]:
    if not crds.REFTYPES[ref.reftype].frame:
        return _SMALL
    subarray = ref.value("SUBARRAY")
    if subarray is not None and subarray in _SUBARRAYS:
        return _SUBARRAYS[subarray]
    return _FULL.get(ref.instrument, (2048, 2048))


def reference_recipe(ref: crds.Reference) -> Recipe:
    """The bytes of a reference file, as a recipe (deterministic from the reference alone)."""
    name = ref.name
    h = hash_text(name)
    kind = crds.REFTYPES[ref.reftype]
    instrume = _INSTRUMENT_CARDS.get(ref.instrument, ref.instrument.upper())
    detector = ref.value("DETECTOR") or "ANY"
    cards: list[tuple[str, str | int | float | bool]] = [
        ("DATE", f"2022-06-{1 + h % 28:02d}T12:00:00.000"),
        ("FILENAME", name),
        ("TELESCOP", "JWST"),
        ("INSTRUME", instrume),
        ("REFTYPE", ref.reftype.upper()),
        ("DETECTOR", detector),
    ]
    for selector, value in ref.selection:
        if selector != "DETECTOR":
            key = "GRATING" if selector == "PUPIL" and ref.instrument == "nirspec" else selector
            cards.append((key, value))
    flight = h % 3 != 0
    cards += [
        ("PEDIGREE", "INFLIGHT 2022-07-01 2022-07-31" if flight else "GROUND"),
        ("USEAFTER", _USEAFTER[flight]),
        ("AUTHOR", "mastfs archive simulator"),
        ("DESCRIP", f"{ref.reftype} reference for {instrume} {detector}"[:68]),
    ]
    shape = _shape(ref)
    hdus = [Image("SCI", -32, shape, role="err")]
    if kind.dq:
        hdus.append(Image("DQ", 32, shape, role="dq"))
    return Recipe(
        fmt="fits", style="stars", seed=h & 0x7FFFFFFF, cards=tuple(cards), hdus=tuple(hdus)
    )


def context_text(context: str) -> tuple[str, ...]:
    """The lines of a context (`.pmap`): its header and selector, in CRDS mapping syntax."""
    imaps = _IMAPS[context]
    selector = [
        "selector = {",
        *(f"    '{k}' : 'jwst_{k.lower()}_{v:04d}.imap'," for k, v in sorted(imaps.items())),
        "}",
    ]
    body = "\n".join(selector)
    serial = int(context.split("_")[1].split(".")[0])
    header = [
        "header = {",
        f"    'derived_from' : 'jwst_{serial - 1:04d}.pmap',",
        "    'mapping' : 'PIPELINE',",
        f"    'name' : '{context}',",
        "    'observatory' : 'JWST',",
        "    'parkey' : ('META.INSTRUMENT.NAME',),",
        f"    'sha1sum' : '{hashlib.sha1(body.encode()).hexdigest()}',",
        "}",
        "",
    ]
    return (*header, *selector)


class CrdsFile(SimFile):
    """A file of the CRDS host: a `SimFile` whose `read` gives `bytes`, to compare with what a
    client received."""

    __slots__ = ()

    def read(self, offset: int, length: int) -> bytes:
        return bytes(super().read(offset, length))


class CrdsFiles:
    """The files of the simulator's CRDS host, by observatory and exact name."""

    def __init__(self, products: Iterable[SimFile]) -> None:
        self._products = products
        self._lock = threading.Lock()
        self._references: dict[str, CrdsFile] | None = None
        self._mappings: dict[str, CrdsFile] = {}

    def _index(self) -> dict[str, CrdsFile]:
        with self._lock:
            if self._references is None:
                self._references, self._mappings = self._build()
            return self._references

    def _build(self) -> tuple[dict[str, CrdsFile], dict[str, CrdsFile]]:
        refs: dict[str, crds.Reference] = {}
        contexts: set[str] = set()
        for f in self._products:
            if f.collection != "JWST" or f.recipe.fmt != "fits":
                continue
            calibration = crds.calibration(dict(f.recipe.cards))
            if calibration is None:
                continue
            contexts.add(calibration.context)
            for _, ref in calibration.references:
                if ref is None:
                    continue
                seen = refs.setdefault(ref.name, ref)
                if seen != ref:
                    raise AssertionError(f"two references named {ref.name}: {seen}, {ref}")
        references = {name: self._file(name, reference_recipe(ref)) for name, ref in refs.items()}
        mappings = {
            c: self._file(c, Recipe(fmt="text", seed=hash_text(c), items=context_text(c)))
            for c in sorted(contexts)
        }
        return references, mappings

    @staticmethod
    def _file(name: str, recipe: Recipe) -> CrdsFile:
        return CrdsFile(
            uri=crds_uri(crds.OBSERVATORY, name),
            filename=name,
            collection="JWST",
            dataset="references",
            size=recipe_size(recipe),
            last_modified=_USEAFTER_POSIX[hash_text(name) % 3 != 0] + 86400 * 40,
            proposal_id="",
            dataRights="PUBLIC",
            recipe=recipe,
        )

    def names(self, observatory: str) -> list[str]:
        """Every reference file the catalog's products name, sorted."""
        return sorted(self._index()) if observatory == crds.OBSERVATORY else []

    def mapping_names(self, observatory: str) -> list[str]:
        self._index()
        return sorted(self._mappings) if observatory == crds.OBSERVATORY else []

    def reference(self, observatory: str, name: str) -> CrdsFile | None:
        """The reference file `name` exactly, or None."""
        if observatory != crds.OBSERVATORY:
            return None
        return self._index().get(name)

    def mapping(self, observatory: str, name: str) -> CrdsFile | None:
        """The context `name` (`jwst_1241.pmap`) exactly, or None."""
        if observatory != crds.OBSERVATORY:
            return None
        self._index()
        return self._mappings.get(name)
