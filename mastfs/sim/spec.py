"""The vocabulary of a program spec: a program, its blocks of observations, their headers.

A spec says which observations a program has, in which order, and which kinds of products
(`kinds.py`) each lists; `expand.py` turns it into catalog rows and files. Nothing here
computes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PUBLIC = "PUBLIC"
EXCLUSIVE_ACCESS = "EXCLUSIVE_ACCESS"


@dataclass(frozen=True)
class Header:
    """FITS header values of a JWST exposure (the observation's own come from its row)."""

    instrume: str
    detector: str
    exp_type: str
    filt: str
    pupil: str
    subarray: str
    readpatt: str
    nints: int = 1
    ngroups: int = 1
    observation: int = 1
    visit: int = 1
    exposure: int = 1
    expstart: float | None = None  # None: the observation's t_min


@dataclass(frozen=True)
class Obs:
    """One observation row and the kinds of products it lists, in order.

    `members` are obs_ids of exposures listed with a level-3 observation; `visit` groups the
    exposures that share the program's visit products (guide stars, MSA file).
    """

    obs_id: str
    level: int
    instrument: str
    filters: str
    dataproduct_type: str
    t_min: float
    exptime: float
    em: tuple[float, float]
    kinds: tuple[str, ...]
    offset: tuple[float, float] = (0.0, 0.0)
    half_size: float = 0.02
    header: Header | None = None
    shape: tuple[int, int] = (0, 0)  # (ncols, nrows) of the frame or mosaic
    dims: Mapping[str, int] = field(default_factory=dict)  # more named dimensions
    preview: tuple[int, int] = (0, 0)  # (width, height) of the full-size preview
    thumb: tuple[int, int] = (0, 0)
    style: str = ""  # picture style of its files
    scale: float = 0.0  # arcsec per pixel of its images' WCS; 0 = none
    no_wcs: tuple[str, ...] = ()  # kinds whose images carry no WCS all the same
    members: tuple[str, ...] = ()
    visit: str = ""
    seq: int = 0  # the sequence number in its association's name
    candidate: str = ""  # its association candidate in the pool
    data_kind: str = ""  # the kind whose file is the row's dataURL
    jpeg_kind: str = ""  # ... and jpegURL


# How a block orders its rows and files:
# "wrap": the level-3 rows, the member exposures, then the level-3 products (JWST pipeline);
# "level3-first": each level-3 row with its products, then the exposures (HST associations);
# "members-first": the exposures, then each level-3 row with its products (JWST sources).
Order = Literal["wrap", "level3-first", "members-first"]


@dataclass(frozen=True)
class Block:
    level3: tuple[Obs, ...]
    exposures: tuple[Obs, ...]
    order: Order = "wrap"


@dataclass(frozen=True)
class Program:
    """One proposal: who, what, where, and its observations in blocks."""

    collection: str
    proposal_id: str
    obsid_base: int  # obsids are obsid_base + 1, 2, ... in row order
    target: str
    target_class: str
    ra: float
    dec: float
    pi: str
    title: str
    proposal_type: str
    rights: str
    release_mjd: float
    prvversion: str
    names: tuple[str, ...]  # the resolver's canonical name, then aliases
    blocks: tuple[Block, ...]
    version: str = ""  # association stamp (JWST)
    visit_kinds: tuple[str, ...] = ()  # listed by every exposure of a visit
    pool: bool = False  # one association pool, listed under every observation (JWST)
    # The pool's file is made with the first products made, not after the last ones.
    pool_early: bool = False

    @property
    def program(self) -> str:
        return f"{int(self.proposal_id):05d}"
