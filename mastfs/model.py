"""Domain types that cross layer boundaries: one archive product and its access rights.

Field names are MAST's own (`dataURI`, `productSubGroupDescription`, `obs_id`, ...), so that a
reader of MAST's documentation recognises them. This module is pure: no I/O, no trio, no FUSE.
"""

from __future__ import annotations

from dataclasses import dataclass

PUBLIC = "PUBLIC"
EXCLUSIVE_ACCESS = "EXCLUSIVE_ACCESS"


# The `project` of the calibration reference files a mount adds (`--references`); no MAST
# product row has it.
REFERENCE_PROJECT = "CRDS"


@dataclass(frozen=True, slots=True)
class Product:
    """One row of `Mast.Caom.Products`, joined with what the views need of its observation.

    The same file (same `dataURI`) may appear in several rows, under different `obs_id`
    (dataset folders) or `parent_obsid`: that is how MAST reports shared products such as
    association, pool and guide-star files.
    """

    dataURI: str
    productFilename: str
    obs_id: str
    obs_collection: str
    size: int
    obsID: str = ""
    parent_obsid: str = ""
    dataRights: str = PUBLIC
    calib_level: int = 0
    productType: str = ""
    productGroupDescription: str = ""
    productSubGroupDescription: str = ""
    description: str = ""
    dataproduct_type: str = ""
    type: str = ""
    project: str = ""
    prvversion: str = ""
    proposal_id: str = ""
    filters: str = ""
    productDocumentationURL: str = ""
    # From the parent observation row (`Mast.Caom.Filtered`), not the product row.
    instrument_name: str = ""
    # POSIX seconds; from the parent observation's `t_max` (MJD). 0 when unknown.
    mtime: float = 0.0

    @property
    def is_exclusive(self) -> bool:
        return self.dataRights.upper() == EXCLUSIVE_ACCESS

    @property
    def is_reference(self) -> bool:
        """A CRDS calibration reference file of `references/` (`calibration.py`)."""
        return self.project == REFERENCE_PROJECT


@dataclass(frozen=True, slots=True)
class User:
    """Who is logged in, as MAST's auth info endpoint reports it."""

    display_name: str
    # Proposal IDs whose exclusive-access data this user may read, when known. MAST does not
    # list them; mastfs learns authorization per file from the archive's 401/403 answers.
    authorized_proposals: frozenset[str] = frozenset()
