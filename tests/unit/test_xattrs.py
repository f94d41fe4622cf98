"""The extended attributes' names (users type them: docs/usage.md) and a product's values."""

from __future__ import annotations

from mastfs.model import EXCLUSIVE_ACCESS
from mastfs.xattrs import (
    XATTR_CACHE,
    XATTR_PREFIX,
    XATTR_SELECTION,
    XATTR_SUMMARY,
    product_xattrs,
)
from tests.support.sample_products import EXP, jwst


def test_names_are_the_documented_ones() -> None:
    assert XATTR_SELECTION == b"user.mastfs.selection"
    assert XATTR_SUMMARY == b"user.mastfs.summary"
    assert XATTR_CACHE == b"user.mastfs.cache"
    assert XATTR_PREFIX == "user.mast."


def test_product_xattrs_are_the_file_details_without_empty_values() -> None:
    p = jwst(f"{EXP}_nis_cal.fits", EXP, 2, "CAL", rights=EXCLUSIVE_ACCESS)
    attrs = product_xattrs(p, readable=False)
    assert attrs["user.mast.uri"] == p.dataURI
    assert attrs["user.mast.dataset"] == EXP
    assert attrs["user.mast.product_level"] == "2b"
    assert attrs["user.mast.group"] == "CAL"
    assert attrs["user.mast.access"] == EXCLUSIVE_ACCESS
    assert attrs["user.mast.readable"] == "no"
    assert product_xattrs(p, readable=True)["user.mast.readable"] == "yes"
    # Columns the archive left empty are not shown as empty attributes.
    assert p.description == "" and "user.mast.description" not in attrs
    assert all(name.startswith(XATTR_PREFIX) and value for name, value in attrs.items())
