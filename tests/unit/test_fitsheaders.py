"""The FITS header walker on hostile bytes: every failure bounded, named, and never a hang."""

from __future__ import annotations

import pytest

from mastfs.fitsheaders import (
    FITS_BLOCK,
    MAX_HDUS,
    MAX_HEADER_BLOCKS,
    MAX_HEADER_BYTES,
    HeaderError,
    HeaderWalk,
    render,
)
from tests.support.fitsbytes import header

PRIMARY = header("SIMPLE  =                    T", "BITPIX  =                    8",
                 "NAXIS   =                    0", "EXTEND  =                    T")  # fmt: skip


def image(*extra: str, bitpix: int = -32, axes: tuple[int, ...] = (10, 3)) -> bytes:
    cards = ["XTENSION= 'IMAGE   '", f"BITPIX  = {bitpix:>20}", f"NAXIS   = {len(axes):>20}"]
    cards += [f"NAXIS{i + 1:<3}= {n:>20}" for i, n in enumerate(axes)]
    return header(*cards, "PCOUNT  =                    0", "GCOUNT  =                    1",
                  *extra)  # fmt: skip


def data(nbytes: int) -> bytes:
    return b"\x01" * nbytes + b"\0" * (-nbytes % FITS_BLOCK)


def walk(blob: bytes, chunk: int = FITS_BLOCK) -> HeaderWalk:
    w = HeaderWalk(len(blob))
    reads = 0
    while (at := w.want()) is not None:
        reads += 1
        assert reads < 10_000, "the walk does not end"
        w.feed(at, blob[at : at + chunk])
    return w


@pytest.mark.parametrize("chunk", [FITS_BLOCK, 3 * FITS_BLOCK, 1 << 20])
def test_seeks_over_data_and_names_each_hdu(chunk: int) -> None:
    blob = PRIMARY + image("EXTNAME = 'SCI     '") + data(120) + image(bitpix=16, axes=(5,))
    blob += data(10)
    w = walk(blob, chunk)
    assert [h.offset for h in w.hdus] == [0, 2880, 3 * 2880]
    assert [h.data_size for h in w.hdus] == [0, 4 * 10 * 3, 10]
    text = render(w.hdus).decode()
    assert text.splitlines()[0] == "# HDU 0 PRIMARY PrimaryHDU (no data)"
    assert "# HDU 1 SCI ImageHDU (10, 3) float32" in text.splitlines()
    assert "# HDU 2 - ImageHDU (5) int16" in text.splitlines()
    assert all(len(line) == 80 for line in text.splitlines() if not line.startswith("#"))


def test_a_header_costs_its_blocks_only() -> None:
    """A 2.9 GB data section is never read: the walk asks for the next header's offset."""
    big = image(axes=(2880, 1000, 250))  # 2.88e9 bytes of float32, a multiple of 2880
    nbytes = 4 * 2880 * 1000 * 250
    w = HeaderWalk(2880 + len(big) + nbytes + len(image()))
    w.feed(0, PRIMARY + big)
    assert w.want() == 2880 + len(big) + nbytes
    w.feed(w.want() or 0, image())  # the file's last block
    assert len(w.hdus) == 3 and w.want() is None


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\0" * 2880, "first card is not SIMPLE"),
        (b"SIMPLE  =" + b" " * 100, "shorter than one 2880-byte block"),
        (header("SIMPLE  =                    T", "BITPIX  =                    8", end=False)
         * 2, "ends before its END card"),
        (header("SIMPLE  =                    T", "BITPIX  =                   12",
                "NAXIS   =                    0"), "BITPIX = 12 is not one of"),
        (header("SIMPLE  =                    T", "BITPIX  =                    8",
                "NAXIS   =                    1", "NAXIS1  =                   -5"),
         "NAXIS1 = -5 is not >= 0"),
        (header("SIMPLE  =                    T", "BITPIX  =                    8",
                "NAXIS   =                 5000"), "NAXIS = 5000 is not in 0..999"),
        (header("SIMPLE  =                    T", "BITPIX  = 'eight'",
                "NAXIS   =                    0"), "BITPIX is 'eight', not an integer"),
        (PRIMARY + image(axes=(1, 1)).replace(b"PCOUNT  =                    0",
                                              b"PCOUNT  =                   -9"),
         "PCOUNT = -9 is not >= 0"),
    ],
)  # fmt: skip
def test_malformed_headers_fail_naming_the_value(blob: bytes, message: str) -> None:
    with pytest.raises(HeaderError, match=message):
        walk(blob)


def test_an_endless_header_is_bounded() -> None:
    endless = header("SIMPLE  =                    T", end=False)
    endless += header(*(["COMMENT   more"] * 36), end=False) * (MAX_HEADER_BLOCKS + 5)
    with pytest.raises(HeaderError, match=f"no END card in {MAX_HEADER_BLOCKS} blocks"):
        walk(endless, chunk=1 << 20)


def test_absurd_sizes_end_the_walk_without_reading_them() -> None:
    # NAXIS1 x NAXIS2 of 10**30 elements: the next header would lie far past the end.
    blob = PRIMARY + image(axes=(10**15, 10**15)) + b"\0" * 2880
    w = walk(blob)
    assert len(w.hdus) == 2 and w.hdus[1].data_size == 4 * 10**30


def test_hdus_are_bounded() -> None:
    blob = PRIMARY + image(axes=(0,)) * (MAX_HDUS + 10)
    assert len(walk(blob, chunk=1 << 20).hdus) == MAX_HDUS


def test_all_headers_together_are_bounded() -> None:
    """Many long headers, each within its own bound, cannot make a text of gigabytes."""
    long = header("XTENSION= 'IMAGE   '", "BITPIX  =                    8",
                  "NAXIS   =                    0", *(["COMMENT   x"] * 36 * 300))  # fmt: skip
    blob = PRIMARY + long * (MAX_HEADER_BYTES // len(long) + 2)
    with pytest.raises(HeaderError, match="the headers exceed 4 MiB"):
        walk(blob, chunk=1 << 20)


def test_padding_after_the_last_hdu_is_ignored_as_astropy_does() -> None:
    w = walk(PRIMARY + image(axes=(2,)) + data(8) + b"\0" * 5000)
    assert len(w.hdus) == 2


def test_non_ascii_bytes_are_shown_as_question_marks() -> None:
    blob = header("SIMPLE  =                    T", "BITPIX  =                    8",
                  "NAXIS   =                    0", "OBSERVER= 'Ana\xefs\x07'")  # fmt: skip
    text = render(walk(blob).hdus)
    assert b"OBSERVER= 'Ana?s?'" in text
    text.decode("ascii")


def test_random_groups_skip_naxis1() -> None:
    blob = header("SIMPLE  =                    T", "BITPIX  =                  -32",
                  "NAXIS   =                    3", "NAXIS1  =                    0",
                  "NAXIS2  =                    3", "NAXIS3  =                    2",
                  "GROUPS  =                    T", "PCOUNT  =                    4",
                  "GCOUNT  =                   10")  # fmt: skip
    w = walk(blob + data(4 * 10 * (4 + 6)) + image(axes=(1,)) + data(4))
    assert w.hdus[0].data_size == 4 * 10 * (4 + 3 * 2)
    assert len(w.hdus) == 2


def test_feeding_less_than_a_block_before_the_end_is_a_driver_error() -> None:
    w = HeaderWalk(10 * FITS_BLOCK)
    with pytest.raises(ValueError, match="less than a block"):
        w.feed(0, PRIMARY[:100])
