"""Program 2734 as a hostile archive serves it: every kind of bad value in its Portal rows.

Shared by the query tests (tests/core/test_hostile_archive.py) and the mount tests
(tests/mount/test_hostile_mount.py); `bad_rows(proxy)` installs the rewriting on a
`tests.support.hostile.HostileProxy`.
"""

from __future__ import annotations

from typing import Any

from mastfs.safetext import REPLACEMENT
from tests.support.hostile import HostileProxy, portal, rows

SEG1 = "jw02734001001_02101_00001-seg001_nis"
R = REPLACEMENT
# Each bad name (by the end of the name it replaces), and what becomes of it.
BAD_NAMES = {
    f"{SEG1}_cal.fits": ("esc\x1b[31mred\x1b[0m_cal.fits", f"esc{R}[31mred{R}[0m_cal.fits"),
    f"{SEG1}_rate.jpg": ("lone\ud800surrogate_rate.jpg", f"lone{R}surrogate_rate.jpg"),
    f"{SEG1}_rate_thumb.png": ("nul\x00byte_thumb.png", f"nul{R}byte_thumb.png"),
    "_tso-spec2_001_asn.json": ("=HYPERLINK(1)_asn.json", "=HYPERLINK(1)_asn.json"),
}
FORMULA_NAME = "=HYPERLINK(1)_asn.json"
# Sizes that are no sizes, by the name of the file that gets them.
BAD_SIZES = {
    f"{SEG1}_uncal.fits": 10**20,
    f"{SEG1}_rate.fits": 1e20,
    f"{SEG1}_rateints.fits": -5,
    f"{SEG1}_x1dints.fits": "huge",
}
# Every observation ends at MJD 1e300.
T_MAX = 1e300
DESCRIPTION = "\x1b]0;owned\x07 \x1b[2J"


def bad_rows(proxy: HostileProxy, sizes: bool = True, names: bool = True) -> None:
    """Rewrite program 2734's answers: observations end at `T_MAX`; the products of `BAD_SIZES`
    get sizes that are no sizes; those of `BAD_NAMES` names that no file system, terminal or
    spreadsheet should take as they are, and a description with terminal escapes."""

    def product(row: dict[str, Any]) -> None:
        name = row["productFilename"]
        if sizes and name in BAD_SIZES:
            row["size"] = BAD_SIZES[name]
        for end, (bad, _) in BAD_NAMES.items() if names else ():
            if name.endswith(end):
                row["productFilename"] = bad
                row["description"] = DESCRIPTION

    proxy.on(portal("Mast.Caom.Products"), rows(product))
    proxy.on(portal("Mast.Caom.Filtered"), rows({"t_max": T_MAX}))
