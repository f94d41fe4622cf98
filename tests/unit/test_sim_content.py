"""Generated file bytes: valid formats, exact sizes, range reads, stability, content changes."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mastfs.sim import content
from mastfs.sim.catalog import (
    BIG_4G_URI,
    HOSTILE_URI,
    ONE_GIB_URI,
    PARALLEL_URIS,
    SMALL_JSON_URI,
    Catalog,
    default_catalog,
)
from mastfs.sim.content import SimFile

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return default_catalog()


def _file(cat: Catalog, uri: str) -> SimFile:
    f = cat.file(uri)
    assert f is not None, uri
    return f


def _by_name(cat: Catalog, suffix: str, proposal: str | None = None) -> SimFile:
    return next(
        f
        for f in cat.files()
        if f.filename.endswith(suffix) and (proposal is None or f.proposal_id == proposal)
    )


class _Reader(io.RawIOBase):
    """A seekable file object over `SimFile.read`, so astropy never sees the whole file."""

    def __init__(self, f: SimFile) -> None:
        self.f = f
        self.pos = 0
        self.requested = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.f.size}[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.f.read(self.pos, len(buf))
        buf[: len(data)] = data
        self.pos += len(data)
        self.requested += len(data)
        return len(data)


def _open_fits(data: bytes) -> fits.HDUList:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hdul = fits.open(io.BytesIO(data))
        hdul.verify("exception")
        for hdu in hdul:
            _ = hdu.data
    return hdul


# ----------------------------------------------------------------------------------------------
# FITS


@pytest.mark.parametrize(
    ("suffix", "proposal"),
    [
        ("_nis_x1dints.fits", "2734"),
        ("_gs-acq2_2022181113512_cal.fits", "2734"),
        ("_msa.fits", "1999"),
        ("_x1d.fits", "1999"),
        ("_asn.fits", "10775"),
        ("_trl.fits", "10775"),
        ("_mirimage_rate.fits", "1558"),
        ("_segm.fits", "1558"),
    ],
)
def test_small_fits_products_are_valid(cat: Catalog, suffix: str, proposal: str | None) -> None:
    f = _by_name(cat, suffix, proposal)
    data = bytes(f.read(0, f.size))
    assert len(data) == f.size and f.size % 2880 == 0
    hdul = _open_fits(data)
    h = hdul[0].header
    assert h["FILENAME"] == f.filename
    assert h["TELESCOP"] == f.collection
    assert h["TARGNAME"] and h["DATE-OBS"] and h["INSTRUME"] and h["DETECTOR"]
    assert h["OBS_ID"]
    if f.collection == "JWST":
        assert h["PROGRAM"] == f"{int(f.proposal_id):05d}"
        assert h["EXP_TYPE"] and h["FILTER"]
    else:
        assert h["PROPOSID"] == int(f.proposal_id)
    assert len(hdul) >= 2


def test_imaging_cal_has_sci_err_dq_and_a_scene(cat: Catalog) -> None:
    f = _by_name(cat, "_mirimage_cal.fits")
    hdul = _open_fits(bytes(f.read(0, f.size)))
    names = [h.name for h in hdul]
    assert names[:4] == ["PRIMARY", "SCI", "ERR", "DQ"] and names[-1] == "ASDF"
    sci = hdul["SCI"].data
    assert sci.shape == (1024, 1032) and sci.dtype.kind == "f"
    # The ring nebula: a rim much brighter than the sky, which is noisy, not flat.
    assert np.percentile(sci, 99.9) > 10 * np.percentile(sci, 1) > 0
    assert 0 < np.std(sci[:20, :20]) < 1
    assert hdul["SCI"].header["CTYPE1"] == "RA---TAN"
    assert hdul[0].header["FILTER"].startswith("F")


def test_soss_cube_shows_a_trace_in_every_plane(cat: Catalog) -> None:
    f = _file(cat, BIG_4G_URI)
    with fits.open(io.BufferedReader(_Reader(f))) as hdul:
        sci = hdul["SCI"]
        assert sci.header["NAXIS1"] == 2048 and sci.header["NAXIS2"] == 256
        for integration, group in ((0, 0), (40, 3), (84, 51)):
            plane = sci.section[integration, group, :, :]
            rows = plane.astype(np.int64).sum(axis=1)
            assert rows.max() > 1.3 * np.median(rows)  # a bright band of rows: the trace


def test_big_file_headers_and_sections_without_materialising(cat: Catalog) -> None:
    f = _file(cat, BIG_4G_URI)
    assert f.size >= 4 * GIB and f.size % 2880 == 0
    reader = _Reader(f)
    header = fits.getheader(io.BufferedReader(reader), ext=1)
    assert header["EXTNAME"] == "SCI"
    shape = [header[f"NAXIS{i}"] for i in range(1, 5)]
    assert shape[:2] == [2048, 256]
    assert shape[0] * shape[1] * shape[2] * shape[3] * 2 > 4 * GIB - 10 * MIB
    reader2 = _Reader(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(io.BufferedReader(reader2)) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "SCI", "INT_TIMES", "ASDF"]
            last = hdul["SCI"].section[shape[3] - 1, shape[2] - 1, 100:110, :]
            assert last.shape == (10, 2048) and last.dtype == np.uint16
            assert len(hdul["INT_TIMES"].data) == shape[3]
    assert reader.requested + reader2.requested < 64 * MIB


def test_one_gib_files_end_with_64_bytes_of_padding(cat: Catalog) -> None:
    for uri in PARALLEL_URIS:
        f = _file(cat, uri)
        assert f.size == GIB
        assert bytes(f.read(GIB - 64, 100)) == bytes(64)
    f = _file(cat, ONE_GIB_URI)
    # The FITS part ends at the last 2880-byte boundary; astropy only notes the extra padding.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fits.open(io.BufferedReader(_Reader(f))) as hdul:
            names = [h.name for h in hdul]
            assert names[:4] == ["PRIMARY", "SCI", "ERR", "DQ"] and names[-1] == "ASDF"
            assert hdul["SCI"].section[5, 60:70, 1000:1010].shape == (10, 10)
    messages = [str(w.message) for w in caught]
    assert all("padding" in m for m in messages), messages


def test_content_change_keeps_size_changes_bytes_and_etag(cat: Catalog) -> None:
    f = _by_name(cat, "_mirimage_rate.fits")
    g = f.with_generation(3)
    assert (g.size, g.uri, g.generation) == (f.size, f.uri, 3)
    assert g.etag != f.etag and g.etag.startswith('"') and g.etag.endswith('"')
    a, b = bytes(f.read(0, f.size)), bytes(g.read(0, g.size))
    assert a[:5760] != b[:5760]  # the primary header, two blocks with its calibration cards
    assert a[-2 * MIB :] != b[-2 * MIB :]
    assert _open_fits(b)[0].header["SIMGEN"] == 3
    assert g.with_generation(0).etag == f.etag
    assert bytes(g.with_generation(0).read(0, 5000)) == a[:5000]
    for name in ("_asn.json", "_pool.csv", "_cat.ecsv", "_thumb.png", "_cal.jpg", "_log.txt"):
        x = _by_name(cat, name)
        y = x.with_generation(1)
        assert bytes(x.read(0, x.size)) != bytes(y.read(0, y.size)), name
        assert len(bytes(y.read(0, y.size))) == x.size


# ----------------------------------------------------------------------------------------------
# Ranges


@pytest.fixture(scope="module")
def window(cat: Catalog) -> tuple[SimFile, int, bytes]:
    """8 MiB of the 1 GiB file around the SCI/ERR boundary, read once."""
    f = _file(cat, ONE_GIB_URI)
    start = 170 * MIB - 3 * MIB - 12345
    return f, start, bytes(f.read(start, 8 * MIB))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=st.integers(0, 8 * MIB), n=st.integers(0, 3 * MIB), chunk=st.integers(4096, 2 * MIB))
def test_random_ranges_are_slices_of_a_bigger_read(
    window: tuple[SimFile, int, bytes], a: int, n: int, chunk: int
) -> None:
    f, start, data = window
    n = min(n, len(data) - a)
    expected = data[a : a + n]
    assert bytes(f.read(start + a, n)) == expected
    pieces = list(f.iter_range(start + a, start + a + n, chunk=chunk))
    assert all(0 < len(p) <= chunk for p in pieces)
    assert b"".join(pieces) == expected


@settings(max_examples=40, deadline=None)
@given(a=st.integers(0, 30_000_000), n=st.integers(0, 70_000))
def test_random_ranges_of_a_whole_small_file(a: int, n: int) -> None:
    f = _by_name(default_catalog(), "_mirimage_cal.fits")
    whole = _whole(f.uri)
    assert bytes(f.read(a, n)) == whole[a : a + n]


_WHOLE: dict[str, bytes] = {}


def _whole(uri: str) -> bytes:
    if uri not in _WHOLE:
        f = _file(default_catalog(), uri)
        _WHOLE[uri] = bytes(f.read(0, f.size))
    return _WHOLE[uri]


def test_read_clips_to_size(cat: Catalog) -> None:
    f = _by_name(cat, "_asn.json")
    assert bytes(f.read(f.size - 10, 100)) == _whole(f.uri)[-10:]
    assert f.read(f.size, 10) == b""
    assert f.read(f.size + 5, 10) == b""
    assert f.read(0, 0) == b""


def test_distant_blocks_differ(cat: Catalog) -> None:
    """A cache serving block i in place of block j must see different bytes."""
    f = _file(cat, BIG_4G_URI)
    for block in (64 << 10, MIB, 4 * MIB, 64 * MIB):
        seen = {bytes(f.read(k * block + 10 * MIB, 512)) for k in range(48)}
        assert len(seen) == 48, block
    # Two files of the same kind differ too.
    a, b = (_file(cat, u) for u in PARALLEL_URIS[:2])
    assert bytes(a.read(100 * MIB, 4096)) != bytes(b.read(100 * MIB, 4096))


def test_pattern_periods_are_odd_multiples_of_the_item_size() -> None:
    for key in list(content._patterns)[:20] or [("soss", "sci", -32, 2048, 257)]:
        pat = content._pattern(*key)
        itemsize = abs(key[2]) // 8
        assert pat.period % itemsize == 0 and (pat.period // itemsize) % 2 == 1


# ----------------------------------------------------------------------------------------------
# Other formats


def _pillow(f: SimFile) -> Image.Image:
    img = Image.open(io.BytesIO(bytes(f.read(0, f.size))))
    img.load()
    return img


def test_jpeg_previews_decode_to_the_intended_picture(cat: Catalog) -> None:
    f = _by_name(cat, "_i2d.jpg", "1558")
    img = _pillow(f)
    assert img.format == "JPEG" and img.mode == "L" and img.size == f.recipe.shape
    decoded = np.asarray(img, dtype=np.int64)
    intended = content._preview_pixels(f.recipe, 0).astype(np.int64)
    assert np.abs(decoded - intended).mean() < 4
    assert decoded.std() > 20  # a picture, not a flat field


def test_png_thumbnails(cat: Catalog) -> None:
    f = _by_name(cat, "_thumb.png", "2734")
    img = _pillow(f)
    assert img.format == "PNG" and img.size == f.recipe.shape
    assert np.array_equal(np.asarray(img), content._preview_pixels(f.recipe, 0))


def test_ecsv_catalog_and_light_curve(cat: Catalog) -> None:
    for suffix in ("_cat.ecsv", "_whtlt.ecsv"):
        f = _by_name(cat, suffix)
        t = Table.read(bytes(f.read(0, f.size)).decode(), format="ascii.ecsv")
        assert len(t) > 10
        if suffix == "_cat.ecsv":
            assert t["sky_centroid.ra"].unit == "deg" and t["label"][0] == 1
        else:
            assert t["whitelight_flux"].min() < 0.99 * t["whitelight_flux"].max()


def test_association_and_pool(cat: Catalog) -> None:
    f = _file(cat, "mast:JWST/product/jw02734-o002_20220630t163421_tso3_001_asn.json")
    asn = json.loads(bytes(f.read(0, f.size)))
    assert asn["asn_type"] == "tso3" and asn["program"] == "02734"
    assert asn["asn_pool"] == "jw02734_20220630t163421_pool.csv"
    members = asn["products"][0]["members"]
    assert len(members) == 5 and all(m["exptype"] == "science" for m in members)
    names = {x.filename for x in cat.files()}
    assert all(m["expname"] in names for m in members)
    pool = _file(cat, "mast:JWST/product/jw02734_20220630t163421_pool.csv")
    t = Table.read(bytes(pool.read(0, pool.size)).decode(), format="ascii", delimiter="|")
    assert len(t) == 10 and "FILENAME" in t.colnames


def test_text_files(cat: Catalog) -> None:
    log_text = bytes(_by_name(cat, "_log.txt").read(0, 10**6)).decode()
    assert "INFO" in log_text
    hostile = _file(cat, HOSTILE_URI)
    assert "quotes" in bytes(hostile.read(0, hostile.size)).decode()


# ----------------------------------------------------------------------------------------------
# Stability


PINNED = {
    SMALL_JSON_URI: "9fdaa18783010d1dcc3bcec6f029f64d74c20c8957f31771ccbb0597cff8ce97",
    "mast:JWST/product/jw01999001001_01_msa.fits": (
        "453c9697209b23fe874a86a917a6a761ece7513980e2624be3de7ebb6bfccccc"
    ),
    "mast:JWST/product/jw02734001001_02101_00001-seg001_nis_rate_thumb.png": (
        "fa91c2e97e36d5b0a9406bf628c7942da456bf730c0e1040f075cb3ccef4444b"
    ),
    "mast:JWST/product/jw02734001001_gs-acq2_2022181113512_cal.fits": (
        "b73b784066d8f0f9a5ba99e5d7e6bfed2b88177ee5d15a862e13fa7cac2d003d"
    ),
}


@pytest.mark.parametrize("uri", sorted(PINNED))
def test_pinned_digests(cat: Catalog, uri: str) -> None:
    """Bytes are the same on every machine and run (integer arithmetic, no libm, no zlib)."""
    f = _file(cat, uri)
    assert f.sha256() == PINNED[uri]
    assert f.sha256() == f.sha256()


def test_sha256_streams_and_matches_content(cat: Catalog) -> None:
    import hashlib

    f = _by_name(cat, "_x1d.fits", "1999")
    assert f.sha256() == hashlib.sha256(_whole(f.uri)).hexdigest()
    assert f.with_generation(2).sha256() != f.sha256()


def test_etags_are_stable_and_distinct(cat: Catalog) -> None:
    other = Catalog()
    etags = {}
    for f in cat.files():
        g = other.file(f.uri)
        assert g is not None and g.etag == f.etag and g.size == f.size
        etags[f.etag] = f.uri
    assert len(etags) == sum(1 for _ in cat.files())


def test_iter_range_pieces_for_streaming(cat: Catalog) -> None:
    f = _file(cat, ONE_GIB_URI)
    pieces: Iterator[memoryview] = f.iter_range(GIB - 3 * MIB, GIB, chunk=MIB)
    total = 0
    for piece in pieces:
        assert 0 < len(piece) <= MIB
        total += len(piece)
    assert total == 3 * MIB
