"""FITS header bytes written by hand, for tests of the header walker on hostile input."""

from __future__ import annotations

from mastfs.fitsheaders import FITS_BLOCK, HeaderWalk


def card(text: str) -> bytes:
    """One 80-column card (latin-1, so a test can put non-ASCII bytes in it)."""
    return text.ljust(80).encode("latin-1")


def header(*cards: str, end: bool = True) -> bytes:
    """A header of `cards`, with an END card unless `end` is false, padded to 2880 bytes."""
    raw = b"".join(card(c) for c in cards) + (card("END") if end else b"")
    return raw + b" " * (-len(raw) % FITS_BLOCK)


def primary(*cards: str) -> HeaderWalk:
    """A walk fed one primary header (no data) made of `cards`."""
    blob = header("SIMPLE  =                    T", "BITPIX  =                    8",
                  "NAXIS   =                    0", *cards)  # fmt: skip
    walk = HeaderWalk(len(blob))
    walk.feed(0, blob)
    return walk
