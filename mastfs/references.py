"""The CRDS reference files a product names in its primary header: the basket's "References".

A JWST (or HST) product calibrated by the pipeline records its CRDS context (`CRDS_CTX`, e.g.
`jwst_1241.pmap`) and, per calibration step, the reference file it used as `R_<TYPE>` keywords
(`R_DARK = 'crds://jwst_niriss_dark_0171.fits'`; `N/A` when the step used none). An HST product
names its references in `*FILE` and `*TAB` keywords with the instrument's CDBS prefix
(`DARKFILE= 'jref$25i1325lj_drk.fits'`, `IDCTAB = 'iref$w3m18525i_idc.fits'`). This module turns
those cards into reference file names, every name checked to be a plain file name (the values
are archive data and become paths under `references/`). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mastfs.fitsheaders import Hdu

# A CRDS reference or mapping name: instrument, type, serial, extension; nothing else.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}\.(fits|asdf|json|pmap|imap|rmap|txt)")
_PREFIX = "crds://"
# HST: a reference keyword, and the CDBS directory prefix of its value (`jref$`, `iref$`, ...).
_HST_KEYWORD = re.compile(r"[A-Z0-9]{1,4}FILE|[A-Z0-9]{1,5}TAB")
_HST_PREFIX = re.compile(r"[a-z]ref\$", re.IGNORECASE)
# Values that mean "no reference file".
_NONE = {"", "N/A", "NA", "NONE", "NOT APPLICABLE"}


@dataclass(frozen=True, slots=True)
class References:
    """What one product's primary header says of its calibration."""

    context: str | None  # the CRDS context (`jwst_1241.pmap`), None if absent or invalid
    files: dict[str, str]  # keyword (`R_DARK`) -> reference file name, in header order
    rejected: tuple[str, ...] = ()  # keywords whose values are not plain reference names


def reference_name(value: object) -> str | None:
    """`jwst_niriss_dark_0171.fits` from `crds://jwst_niriss_dark_0171.fits`; None for `N/A`
    and for anything that is not a plain, lower-case CRDS file name."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lower().startswith(_PREFIX):
        text = text[len(_PREFIX) :]
    if text.upper() in _NONE:
        return None
    return text if _NAME.fullmatch(text) else None


def references(primary: Hdu) -> References:
    """The references named by the cards of a product's primary header."""
    values = primary.all_values()
    files: dict[str, str] = {}
    rejected: list[str] = []
    for keyword, value in values.items():
        if keyword.startswith("R_"):
            name = reference_name(value)
        elif (
            _HST_KEYWORD.fullmatch(keyword)
            and isinstance(value, str)
            and (prefix := _HST_PREFIX.match(value.strip())) is not None
        ):
            name = reference_name(value.strip()[prefix.end() :].lower())
        else:
            continue
        if name is not None:
            files[keyword] = name
        elif isinstance(value, str) and value.strip().upper() not in _NONE:
            rejected.append(keyword)
    context = reference_name(values.get("CRDS_CTX"))
    return References(context, files, tuple(rejected))
