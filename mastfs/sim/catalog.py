"""The simulated archive's catalog: observations, product lists, files, tokens, resolver names.

The catalog expands the program specs (`programs.py`) with the product kinds of each mission
(`kinds.py`); names follow MAST's conventions (docs/simulator.md). Construction is deterministic
and cheap: product rows are built when asked for, file bytes when read.

A file shared between datasets (association, pool, MSA and guide-star files) is one `SimFile`
listed under several observations, so `Mast.Caom.Products` answers carry the same `dataURI`
under different `obs_id` and `parent_obsid`, as MAST's do. Querying a level-3 observation
returns its own products and those of its member exposures, with `parent_obsid` set to the
queried observation and `obsID`/`obs_id` to the exposure's.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mastfs.sim import hla
from mastfs.sim.columns import OBSERVATION_FIELDS, PRODUCT_FIELDS, columns_config
from mastfs.sim.content import SimFile
from mastfs.sim.expand import MRP, ObsRecord, expand, product_row
from mastfs.sim.kinds import HST_KINDS
from mastfs.sim.programs import GIB, N_1999_OBSERVATIONS, SOURCES_PER_OBSERVATION, programs
from mastfs.sim.recipes import mjd_to_posix
from mastfs.sim.spec import EXCLUSIVE_ACCESS, PUBLIC, Program

__all__ = [
    "AUTHORIZED_TOKEN",
    "BIG_4G_URI",
    "EA_PROPOSAL",
    "EXCLUSIVE_ACCESS",
    "EXPIRED_TOKEN",
    "EXPIRED_TOKENS",
    "GIB",
    "HOSTILE_FILENAME",
    "HOSTILE_URI",
    "MRP",
    "N_1999_OBSERVATIONS",
    "OBSERVATION_FIELDS",
    "ONE_GIB_URI",
    "PARALLEL_URIS",
    "PRODUCT_FIELDS",
    "PUBLIC",
    "SMALL_JSON_URI",
    "SOURCES_PER_OBSERVATION",
    "TOKENS",
    "UNAUTHORIZED_TOKEN",
    "Catalog",
    "SimFile",
    "Token",
    "default_catalog",
    "iter_rows",
    "mjd_to_posix",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Token:
    """A MAST API token the simulator knows, and the exclusive-access proposals it may read."""

    token: str
    display_name: str
    proposals: frozenset[str]


AUTHORIZED_TOKEN = "mastsim-authorized-6543"
UNAUTHORIZED_TOKEN = "mastsim-unauthorized"
TOKENS: dict[str, Token] = {
    AUTHORIZED_TOKEN: Token(AUTHORIZED_TOKEN, "Ada Authorized", frozenset({"6543"})),
    UNAUTHORIZED_TOKEN: Token(UNAUTHORIZED_TOKEN, "Una Unauthorized", frozenset()),
}
# Ada's token of last season: expired, so refused (401) like an unknown one.
EXPIRED_TOKEN = "mastsim-expired-6543"
EXPIRED_TOKENS = frozenset({EXPIRED_TOKEN})


def _jw(name: str) -> str:
    return f"mast:JWST/product/{name}"


# Notable files (docs/simulator.md).
BIG_4G_URI = _jw("jw02734001001_02101_00001-seg001_nis_uncal.fits")
ONE_GIB_URI = _jw("jw02734001001_02101_00001-seg001_nis_rateints.fits")
PARALLEL_URIS: tuple[str, ...] = tuple(
    _jw(f"jw02734{v}_{a}_00001-seg{s:03d}_nis_rateints.fits")
    for v, a in (("001001", "02101"), ("002001", "03101"))
    for s in range(1, 5)
)
HOSTILE_FILENAME = HST_KINDS["notes"].filename
HOSTILE_URI = f"mast:HST/product/{HOSTILE_FILENAME}"
SMALL_JSON_URI = _jw("jw02734-o002_20220630t163421_tso3_001_asn.json")
EA_PROPOSAL = "6543"


class Catalog:
    """Observations, their product lists and the files behind them."""

    def __init__(self, specs: Iterable[Program] | None = None) -> None:
        self._obs: list[ObsRecord] = []
        self._by_obsid: dict[str, ObsRecord] = {}
        self._files: dict[str, SimFile] = {}
        self._names: dict[str, tuple[float, float, str]] = {}
        for spec in programs() if specs is None else specs:
            self._add(spec)
        if specs is None:
            self._add_hla()
        self.observations: list[dict[str, object]] = [o.row for o in self._obs]
        log.debug("catalog: %d observations, %d files", len(self._obs), len(self._files))

    def observation(self, obsid: str) -> dict[str, object] | None:
        obs = self._by_obsid.get(str(obsid))
        return obs.row if obs else None

    def products_for(self, obsid: str) -> list[dict[str, object]]:
        """`Mast.Caom.Products` rows for one requested observation (its own and its members')."""
        parent = self._by_obsid.get(str(obsid).strip())
        if parent is None:
            return []
        rows = [product_row(p, parent, parent) for p in parent.products]
        for member in parent.members:
            rows += [product_row(p, member, parent) for p in member.products]
        return rows

    def file(self, uri: str) -> SimFile | None:
        return self._files.get(uri)

    def files(self) -> Iterable[SimFile]:
        return self._files.values()

    def columns_config(self, col_config_id: str) -> dict[str, dict[str, object]]:
        """A MAST-like columnsconfig answer; an empty dict for an unknown configuration."""
        return columns_config(col_config_id)

    def resolve(self, name: str) -> tuple[float, float, str] | None:
        """Target name -> (ra, dec, canonical name), for the targets of the catalog."""
        return self._names.get(_name_key(name))

    def _add(self, spec: Program) -> None:
        done = expand(spec)
        for obs in done.observations:
            if obs.obsid in self._by_obsid:
                raise AssertionError(f"duplicate obsid {obs.obsid}")
            self._obs.append(obs)
            self._by_obsid[obs.obsid] = obs
        for uri, f in done.files.items():
            if uri in self._files:
                raise AssertionError(f"duplicate file {uri}")
            self._files[uri] = f
        canonical = spec.names[0]
        for name in spec.names:
            self._names[_name_key(name)] = (spec.ra, spec.dec, canonical)

    def _add_hla(self) -> None:
        records, files = hla.program(self._files)
        for obs in records:
            self._obs.append(obs)
            self._by_obsid[obs.obsid] = obs
        self._files.update(files)
        for name in hla.NAMES:
            self._names[_name_key(name)] = (hla.RA, hla.DEC, hla.NAMES[0])


def _name_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).upper()


@functools.cache
def default_catalog() -> Catalog:
    """The simulator's catalog, built once per process."""
    return Catalog()


def iter_rows(cat: Catalog) -> Iterator[dict[str, object]]:
    """Every product row of every observation (tests and tools)."""
    for row in cat.observations:
        yield from cat.products_for(str(row["obsid"]))
