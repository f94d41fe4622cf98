"""The extended attributes mastfs shows: their names and a product's `user.mast.*` values.

The root carries the mount's own attributes (`user.mastfs.*`): `mastfs select` sets and reads
them, `fs.py` answers them. Every product carries the basket's "File Details" under
`user.mast.`; with `--references`, a product whose primary header names CRDS reference files
also carries `user.mast.references` (their names, comma-separated, in header order: each is
`references/NAME` in the mount) and `user.mast.crds_context` (`jwst_1241.pmap`). Pure: no I/O,
no FUSE.
"""

from __future__ import annotations

import logging

from mastfs.model import Product
from mastfs.references import References
from mastfs.selection import product_level

log = logging.getLogger(__name__)

# The root's names are bytes, as the kernel passes them to `fs.py` (`os.getxattr` takes either).
# The selection as JSON (`Selection.to_json`); setting it on the root re-selects.
XATTR_SELECTION = b"user.mastfs.selection"
# The one-line summary that `mastfs select` prints.
XATTR_SUMMARY = b"user.mastfs.summary"
# The block cache's counters (JSON), for whoever wonders where the bytes came from.
XATTR_CACHE = b"user.mastfs.cache"
# The mount's status report (JSON, `status.py`), for the mount's owner and root only.
XATTR_STATUS = b"user.mastfs.status"
# Bytes of a product's current version in the disk cache (not listed: `mastfs warm` asks).
XATTR_CACHED = b"user.mastfs.cached"
# The namespace of a product's metadata (a str: the keys of `product_xattrs`).
XATTR_PREFIX = "user.mast."


def product_xattrs(
    p: Product, readable: bool, references: References | None = None
) -> dict[str, str]:
    """The basket's "File Details", as `user.mast.*` extended attributes, and the reference
    files the product's header names, when they were looked for."""
    values = {
        "uri": p.dataURI,
        "dataset": p.obs_id,
        "collection": p.obs_collection,
        "obsid": p.obsID,
        "parent_obsid": p.parent_obsid,
        "product_level": product_level(p),
        "calib_level": str(p.calib_level),
        "group": p.productSubGroupDescription,
        "product_group": p.productGroupDescription,
        "category": p.productType,
        "access": p.dataRights,
        "readable": "yes" if readable else "no",
        "size": str(p.size),
        "description": p.description,
        "prvversion": p.prvversion,
        "proposal_id": p.proposal_id,
        "instrument": p.instrument_name,
        "filters": p.filters,
        "dataproduct_type": p.dataproduct_type,
        "project": p.project,
    }
    if references is not None:
        values["references"] = ",".join(dict.fromkeys(references.files.values()))
        values["crds_context"] = references.context or ""
    return {XATTR_PREFIX + k: v for k, v in values.items() if v != ""}


def product_from_xattrs(values: dict[str, str], filename: str) -> Product:
    """The product a file's `user.mast.*` attributes describe (the inverse of
    `product_xattrs`, for `mastfs warm`'s selection); `filename` is its name in the mount."""

    def get(key: str) -> str:
        return values.get(XATTR_PREFIX + key, "")

    def number(key: str) -> int:
        text = get(key)
        return int(text) if text.isdigit() else 0

    return Product(
        dataURI=get("uri"),
        productFilename=filename,
        obs_id=get("dataset"),
        obs_collection=get("collection"),
        size=number("size"),
        obsID=get("obsid"),
        parent_obsid=get("parent_obsid"),
        dataRights=get("access") or "PUBLIC",
        calib_level=number("calib_level"),
        productType=get("category"),
        productGroupDescription=get("product_group"),
        productSubGroupDescription=get("group"),
        description=get("description"),
        dataproduct_type=get("dataproduct_type"),
        project=get("project"),
        prvversion=get("prvversion"),
        proposal_id=get("proposal_id"),
        filters=get("filters"),
        instrument_name=get("instrument"),
    )
