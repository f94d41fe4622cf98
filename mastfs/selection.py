"""Which products a mount shows: the MAST download overlay's and basket's filters, and a summary.

A `Selection` mirrors the Portal's controls. Within one kind of filter the values are OR-ed, and
the kinds are AND-ed:

- quick selection: `all` (every file except JWST guide-star files, the overlay's "All") or
  `recommended` (Minimum Recommended Products: `productGroupDescription == "Minimum Recommended
  Products"`, exactly astroquery's `mrp_only`).
- `guide_stars`: also admit JWST guide-star files, which both quick selections leave out. They
  are then subject to the other filters like any file (guide-star files are level 1b or 2b, so
  `levels={"3"}` keeps none of them).
- `levels`: the processing level as the Portal shows it (see `product_level`). A coarse level
  `1`/`2` also matches JWST's `1b`/`2a`/`2b`; names are accepted as aliases:
  `uncalibrated` = 1, `calibrated` = 2, `combined` = 3, `hlsp` = 4; so are `L2b` and `level 2b`.
- `groups`: `productSubGroupDescription` (UNCAL, CAL, RATEINTS, I2D, ASN, POOL, GS-FG, ...),
  case-insensitive, an open vocabulary; a row without a subgroup is matched by its suffix.
- `categories`: `productType` (SCIENCE, AUXILIARY, INFO, PREVIEW, CATALOG, CALIBRATION,
  THUMBNAIL), case-insensitive.
- `extensions`: the end of the file name (`fits`, `.jpg`, `fits.gz`); `fits` does not match
  `x.fits.gz`.
- `regex` / `exclude_regex`: JavaScript regular expressions as the overlay takes them (plain or
  `/pattern/flags`, see `mastfs.jsregex`), searched in `productFilename`, the name the overlay's
  preview shows and matches; a file is kept when any `regex` matches and no `exclude_regex` does.
  A pattern is a user's input, even another user's through a shared mount: compiling is bounded
  (`jsregex.MAX_COMPLEXITY` for all of a selection's patterns together, at most
  `MAX_PATTERNS` of them), and all the matching of one `select` (or `unmatched_values`) shares
  one time budget, `MATCH_BUDGET` seconds: past it `RegexTooSlow` is raised, never a hang.
- `public_only`: drop EXCLUSIVE_ACCESS products.

Unknown quick selections, levels and categories raise `SelectionError`, whose message names the
bad value and lists the valid ones; groups and extensions are open vocabularies, so
`unmatched_values` reports the values that match nothing instead.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mastfs.jsregex import MAX_COMPLEXITY, JsRegexError, compile_js, complexity
from mastfs.model import Product, User

log = logging.getLogger(__name__)

ALL = "all"
RECOMMENDED = "recommended"
QUICK_SELECTIONS = (ALL, RECOMMENDED)
_QUICK_ALIASES = {"mrp": RECOMMENDED}
MRP = "Minimum Recommended Products"

LEVELS = ("1", "1b", "2", "2a", "2b", "3", "4")
_LEVEL_ALIASES = {"uncalibrated": "1", "calibrated": "2", "combined": "3", "hlsp": "4"}
CATEGORIES = ("AUXILIARY", "CALIBRATION", "CATALOG", "INFO", "PREVIEW", "SCIENCE", "THUMBNAIL")

# JWST stage-1 outputs (L2a); MAST gives them calib_level 2 like the stage-2 (L2b) products.
_JWST_2A_SUFFIXES = frozenset({"rate", "rateints", "trapsfilled", "ramp", "fitopt", "dark"})
_JWST_GUIDE_STAR = re.compile(r"_gs-[a-z0-9]+", re.IGNORECASE)
_LEVEL_PREFIX = re.compile(r"^(?:level|l)[\s_-]*(?=\d)")


# Seconds of regex matching one selection may take, over all its file names (a few
# milliseconds is usual; a catastrophic pattern such as /^(\w|\w)*$/ is stopped here).
MATCH_BUDGET = 1.0
# Regexes in one selection (`regex` and `exclude_regex` together).
MAX_PATTERNS = 32


class SelectionError(ValueError):
    """A selection value that does not exist; the message lists the valid ones."""


class RegexTooSlow(SelectionError):
    """Matching the selection's regexes took longer than the budget; the message names one."""


def _jwst(p: Product) -> bool:
    return p.obs_collection.upper() == "JWST"


def suffix(p: Product) -> str:
    """The Portal's Suffix column: `_cal`, `_x1dints`, `_asn`, `_pool`, `_i2d` ...

    It is the last `_`-separated part of the name up to its first dot, so a preview
    `..._i2d.jpg` has suffix `_i2d` and a guide-star `..._gs-fg_2022192192555_cal.fits` has
    `_cal` (its subgroup, GS-FG, says it is a guide-star file). A name without `_` has none.
    """
    if p.is_reference:
        # A calibration reference (`references/`): its reference type (`_dark`), not the
        # serial its name ends with.
        return "_" + p.productSubGroupDescription.lower() if p.productSubGroupDescription else ""
    name = p.productFilename
    cut = name.rfind("_")
    if cut < 0:
        return ""
    return "_" + name[cut + 1 :].split(".", 1)[0]


def is_guide_star(p: Product) -> bool:
    """A JWST guide-star file: subgroup GS-* or a `_gs-` name (`jw02420001001_gs-fg_..._cal`)."""
    if p.productSubGroupDescription.upper().startswith("GS-"):
        return True
    return _jwst(p) and _JWST_GUIDE_STAR.search(p.productFilename) is not None


def product_level(p: Product) -> str:
    """The Product Level column: JWST `1b`, `2a`, `2b`, `3`, `4`; other missions `calib_level`.

    MAST's `calib_level` does not separate JWST's 2a (stage-1 rate/rateints, also trapsfilled,
    ramp, fitopt, dark) from 2b (stage-2 products); the product group does, and `uncal` is 1b.
    The group is `productSubGroupDescription`, else the suffix, so that a preview takes the
    level of the product it shows: `_rate.jpg` and `_rate_thumb.png` (subgroup RATE) are 2a
    like `_rate.fits`. Files whose group names no pipeline stage (association `_asn`, `_pool`)
    and guide-star files take their level from `calib_level` alone: 1 → 1b, 2 → 2b. HST and
    other missions show `calib_level` as is ("1", "2", "3", "4"), as does an unexpected JWST
    value (e.g. "0" when the archive gives none).
    """
    if p.is_reference:
        return ""  # a calibration reference is no product of the pipeline
    level = p.calib_level
    if not _jwst(p) or level not in (1, 2):
        return str(level)
    if not is_guide_star(p):
        token = _group_of(p).lower()
        if token == "uncal":
            return "1b"
        if token in _JWST_2A_SUFFIXES:
            return "2a"
    return "1b" if level == 1 else "2b"


def _level_matches(wanted: str, level: str) -> bool:
    return wanted == level or wanted == level.rstrip("ab")


def _extension_matches(wanted: str, filename: str) -> bool:
    return filename.lower().endswith("." + wanted)


def _group_of(p: Product) -> str:
    return (p.productSubGroupDescription or suffix(p)[1:]).upper()


def _split(values: Iterable[str] | str | None) -> list[str]:
    """CLI values, each possibly comma-separated; blanks dropped."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _normalise_level(value: str) -> str:
    v = _LEVEL_PREFIX.sub("", value.strip().lower())
    v = _LEVEL_ALIASES.get(v, v)
    if v not in LEVELS:
        raise SelectionError(
            f"unknown level {value!r}; valid levels: {', '.join(LEVELS)} "
            f"(or {', '.join(_LEVEL_ALIASES)})"
        )
    return v


def _normalise_category(value: str) -> str:
    v = value.strip().upper()
    if v not in CATEGORIES:
        raise SelectionError(
            f"unknown category {value!r}; valid categories: {', '.join(CATEGORIES)}"
        )
    return v


def _normalise_quick(value: str) -> str:
    v = value.strip().lower()
    v = _QUICK_ALIASES.get(v, v)
    if v not in QUICK_SELECTIONS:
        raise SelectionError(
            f"unknown quick selection {value!r}; valid quick selections: "
            f"{', '.join(QUICK_SELECTIONS)}"
        )
    return v


def _normalise_group(value: str) -> str:
    return value.strip().lstrip("_").upper()


def _normalise_extension(value: str) -> str:
    v = value.strip().lower()
    if v.startswith("*"):
        v = v[1:]
    return v.lstrip(".")


def _compile(source: str, option: str) -> Any:
    try:
        return compile_js(source)
    except JsRegexError as exc:
        raise SelectionError(f"invalid {option} {source!r}: {exc}") from exc


def _check_patterns(labelled: Sequence[tuple[str, str]]) -> None:
    """Bound what compiling all of a selection's (option, pattern) pairs may cost."""
    if len(labelled) > MAX_PATTERNS:
        raise SelectionError(f"too many regexes: {len(labelled)} (limit {MAX_PATTERNS})")
    total = 0
    for option, source in labelled:
        try:
            total += complexity(source)
        except JsRegexError as exc:
            raise SelectionError(f"invalid {option} {source!r}: {exc}") from exc
    if total > MAX_COMPLEXITY:
        raise SelectionError(
            f"regexes too complex together: they expand to {total:,} characters when "
            f"compiled (limit {MAX_COMPLEXITY:,})"
        )


def _deadline(budget: float) -> float:
    return time.monotonic() + budget


def _search(pattern: Any, option: str, source: str, name: str, deadline: float) -> bool:
    """Whether `pattern` is found in `name`; `RegexTooSlow` once `deadline` has passed."""
    remaining = deadline - time.monotonic()
    try:
        if remaining <= 0:
            raise TimeoutError
        # `regex` gives up after `timeout` seconds, releasing the GIL while it matches.
        return pattern.search(name, timeout=remaining) is not None
    except TimeoutError:
        raise RegexTooSlow(
            f"{option} {source!r} takes too long to match file names (more than "
            f"{MATCH_BUDGET:g} s); simplify it"
        ) from None


@dataclass(frozen=True)
class Selection:
    """The filters of one mount; every instance is normalised and validated."""

    quick: str = ALL
    levels: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    extensions: frozenset[str] = frozenset()
    guide_stars: bool = False
    regex: tuple[str, ...] = ()
    exclude_regex: tuple[str, ...] = ()
    public_only: bool = False
    _patterns: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)
    _exclude_patterns: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        def values(name: str) -> tuple[str, ...]:
            # A bare string is one value, not a collection of characters.
            v = getattr(self, name)
            return (v,) if isinstance(v, str) else tuple(v)

        put("quick", _normalise_quick(self.quick))
        put("levels", frozenset(_normalise_level(v) for v in values("levels")))
        put("categories", frozenset(_normalise_category(v) for v in values("categories")))
        put("groups", frozenset(g for g in map(_normalise_group, values("groups")) if g))
        exts = map(_normalise_extension, values("extensions"))
        put("extensions", frozenset(e for e in exts if e))
        put("regex", values("regex"))
        put("exclude_regex", values("exclude_regex"))
        _check_patterns(
            [("regex", r) for r in self.regex] + [("exclude regex", r) for r in self.exclude_regex]
        )
        put("_patterns", tuple(_compile(r, "regex") for r in self.regex))
        put("_exclude_patterns", tuple(_compile(r, "exclude regex") for r in self.exclude_regex))

    @classmethod
    def build(
        cls,
        quick: str = ALL,
        levels: Iterable[str] | str | None = None,
        groups: Iterable[str] | str | None = None,
        categories: Iterable[str] | str | None = None,
        extensions: Iterable[str] | str | None = None,
        guide_stars: bool = False,
        regex: Iterable[str] | str | None = None,
        exclude_regex: Iterable[str] | str | None = None,
        public_only: bool = False,
    ) -> Selection:
        """From CLI-ish values: lists or comma-separated strings (regexes are never split)."""

        def patterns(values: Iterable[str] | str | None) -> tuple[str, ...]:
            if values is None:
                return ()
            return (values,) if isinstance(values, str) else tuple(values)

        return cls(
            quick=quick,
            levels=frozenset(_split(levels)),
            groups=frozenset(_split(groups)),
            categories=frozenset(_split(categories)),
            extensions=frozenset(_split(extensions)),
            guide_stars=bool(guide_stars),
            regex=patterns(regex),
            exclude_regex=patterns(exclude_regex),
            public_only=bool(public_only),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "quick": self.quick,
                "levels": sorted(self.levels),
                "groups": sorted(self.groups),
                "categories": sorted(self.categories),
                "extensions": sorted(self.extensions),
                "guide_stars": self.guide_stars,
                "regex": list(self.regex),
                "exclude_regex": list(self.exclude_regex),
                "public_only": self.public_only,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Selection:
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise SelectionError(f"selection is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SelectionError("selection JSON must be an object")
        known: dict[str, type] = {
            "quick": str,
            "levels": list,
            "groups": list,
            "categories": list,
            "extensions": list,
            "guide_stars": bool,
            "regex": list,
            "exclude_regex": list,
            "public_only": bool,
        }
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SelectionError(
                f"unknown selection field(s) {', '.join(unknown)}; valid fields: {', '.join(known)}"
            )
        for key, kind in known.items():
            if key not in data:
                continue
            value = data[key]
            if not isinstance(value, kind) or (
                isinstance(value, list) and not all(isinstance(v, str) for v in value)
            ):
                raise SelectionError(f"selection field {key!r} has the wrong type: {value!r}")
        return cls.build(**data)

    def describe(self) -> str:
        """One line for logs and `mastfs ls`: `recommended; levels 2b, 3; regex /cal/i`."""
        parts = [self.quick]
        for label, values in (
            ("levels", sorted(self.levels)),
            ("groups", sorted(self.groups)),
            ("categories", sorted(self.categories)),
            ("extensions", sorted(self.extensions)),
            ("regex", list(self.regex)),
            ("exclude regex", list(self.exclude_regex)),
        ):
            if values:
                parts.append(f"{label} {', '.join(values)}")
        if self.guide_stars:
            parts.append("with guide stars")
        if self.public_only:
            parts.append("public only")
        return "; ".join(parts)

    def matches(self, p: Product, deadline: float | None = None) -> bool:
        """Whether the selection keeps `p`; its regexes may match until `deadline`
        (`time.monotonic()`; default `MATCH_BUDGET` from now), then `RegexTooSlow`."""
        if not self._filters_match(p):
            return False
        if deadline is None:
            deadline = _deadline(MATCH_BUDGET)
        return self._name_matches(p.productFilename, deadline)

    def _filters_match(self, p: Product) -> bool:
        """Every filter but the regexes."""
        if is_guide_star(p):
            if not self.guide_stars:
                return False
        elif self.quick == RECOMMENDED and p.productGroupDescription != MRP:
            return False
        if self.public_only and p.is_exclusive:
            return False
        if self.levels:
            level = product_level(p)
            if not any(_level_matches(w, level) for w in self.levels):
                return False
        if self.groups and _group_of(p) not in self.groups:
            return False
        if self.categories and p.productType.upper() not in self.categories:
            return False
        return not self.extensions or any(
            _extension_matches(e, p.productFilename) for e in self.extensions
        )

    def _name_matches(self, name: str, deadline: float) -> bool:
        if self._patterns and not any(
            _search(r, "regex", s, name, deadline)
            for s, r in zip(self.regex, self._patterns, strict=True)
        ):
            return False
        return not any(
            _search(r, "exclude regex", s, name, deadline)
            for s, r in zip(self.exclude_regex, self._exclude_patterns, strict=True)
        )


def select(
    products: Sequence[Product], sel: Selection, budget: float = MATCH_BUDGET
) -> list[Product]:
    """The rows `sel` keeps, in input order (duplicate rows are kept; the tree links them).

    All regex matching shares `budget` seconds (`RegexTooSlow` past it); each distinct file
    name is matched once.
    """
    if not sel.regex and not sel.exclude_regex:
        return [p for p in products if sel._filters_match(p)]
    deadline = _deadline(budget)
    verdicts: dict[str, bool] = {}

    def name_matches(name: str) -> bool:
        verdict = verdicts.get(name)
        if verdict is None:
            verdict = verdicts[name] = sel._name_matches(name, deadline)
        return verdict

    return [p for p in products if sel._filters_match(p) and name_matches(p.productFilename)]


def unique_products(products: Iterable[Product]) -> list[Product]:
    """One row per `dataURI`, the first one, in input order."""
    seen: dict[str, Product] = {}
    for p in products:
        seen.setdefault(p.dataURI, p)
    return list(seen.values())


def unmatched_values(
    products: Sequence[Product], sel: Selection, budget: float = MATCH_BUDGET
) -> list[str]:
    """Filter values that match none of `products` on their own, e.g. `group 'CALL'`.

    Each value is tried alone against every product, so a typo is reported even when the
    other filters would have removed its matches anyway. Regexes share `budget` seconds.
    """
    out: list[str] = []
    levels = {product_level(p) for p in products}
    groups = {_group_of(p) for p in products}
    categories = {p.productType.upper() for p in products}
    names = list(dict.fromkeys(p.productFilename for p in products))
    for w in sorted(sel.levels):
        if not any(_level_matches(w, lv) for lv in levels):
            out.append(f"level {w!r}")
    out += [f"group {g!r}" for g in sorted(sel.groups) if g not in groups]
    out += [f"category {c!r}" for c in sorted(sel.categories) if c not in categories]
    for e in sorted(sel.extensions):
        if not any(_extension_matches(e, n) for n in names):
            out.append(f"extension {e!r}")
    deadline = _deadline(budget)
    for label, sources, pats in (
        ("regex", sel.regex, sel._patterns),
        ("exclude regex", sel.exclude_regex, sel._exclude_patterns),
    ):
        for source, pat in zip(sources, pats, strict=True):
            if not any(_search(pat, label, source, n, deadline) for n in names):
                out.append(f"{label} {source!r}")
    if sel.guide_stars and not any(is_guide_star(p) for p in products):
        out.append("guide stars")
    return out


@dataclass(frozen=True)
class Summary:
    """The overlay's selection summary; files are distinct `dataURI`s, bytes their sizes."""

    selected_files: int
    selected_bytes: int
    available_files: int
    available_bytes: int
    unreadable_files: int = 0
    unreadable_bytes: int = 0


def summarize(
    available: Iterable[Product],
    selected: Iterable[Product],
    can_read: Callable[[Product], bool],
) -> Summary:
    """Count distinct files; `unreadable` are selected exclusive-access files `can_read` denies."""
    avail = unique_products(available)
    chosen = unique_products(selected)
    unreadable = [p for p in chosen if p.is_exclusive and not can_read(p)]
    return Summary(
        selected_files=len(chosen),
        selected_bytes=sum(p.size for p in chosen),
        available_files=len(avail),
        available_bytes=sum(p.size for p in avail),
        unreadable_files=len(unreadable),
        unreadable_bytes=sum(p.size for p in unreadable),
    )


def format_bytes(n: int) -> str:
    """Decimal units as the Portal shows volumes: `512 B`, `9.8 GB`, `210 MB`."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    units = ("kB", "MB", "GB", "TB", "PB")
    k = 0
    value /= 1000
    while value >= 1000 and k < len(units) - 1:
        value /= 1000
        k += 1
    unit = units[k]
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def format_summary(summary: Summary, user: User | None = None, show_user: bool = True) -> str:
    """`12 of 40 files selected (1.2 GB of 9.8 GB)`, plus a warning about unreadable files;
    `show_user=False` leaves the logged-in user's name out (for other users of a mount)."""
    noun = "file" if summary.available_files == 1 else "files"
    text = (
        f"{summary.selected_files} of {summary.available_files} {noun} selected "
        f"({format_bytes(summary.selected_bytes)} of {format_bytes(summary.available_bytes)})"
    )
    if summary.unreadable_files:
        n = summary.unreadable_files
        noun, verb = ("file", "is") if n == 1 else ("files", "are")
        if user is None:
            who = "without an authorized MAST token"
        else:
            who = f"by user {user.display_name}" if show_user else "by this mount's MAST login"
        text += (
            f"; {n} exclusive-access {noun} ({format_bytes(summary.unreadable_bytes)}) "
            f"{verb} not readable {who}"
        )
    return text
