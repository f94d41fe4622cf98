"""The cloud key of a product, as astroquery derives it from the archive's path_lookup."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from mastfs import cloud


@pytest.mark.parametrize(
    ("path", "key"),
    [
        # The archive's answers quoted in astroquery's tests and users' reports.
        (
            "/hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits",
            "hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits",
        ),
        (
            "/jwst/public/jw02731/jw02731001001/jw02731001001_02101_00001_nrcb1_cal.fits",
            "jwst/public/jw02731/jw02731001001/jw02731001001_02101_00001_nrcb1_cal.fits",
        ),
        ("/mast/galex/GR6/pipe/x.fits.gz", "galex/GR6/pipe/x.fits.gz"),
        (
            "/ps1/rings.v3.skycell/1334/061/x.fits",
            "panstarrs/ps1/public/rings.v3.skycell/1334/061/x.fits",
        ),
        ("/hlsp_local/public/tica/s0001/x.fits", "mast/tica/s0001/x.fits"),
    ],
)
def test_key_for_path(path: str, key: str) -> None:
    assert cloud.key_for_path(path) == key


@pytest.mark.parametrize("key", ["", "a//b", "a/../b", "./a", "a/b\n", "a\\b", "a?x", "a#y"])
def test_unusable_keys_are_refused(key: str) -> None:
    with pytest.raises(cloud.CloudPathError):
        cloud.check_key(key)


def test_parse_lookup_keeps_only_usable_paths() -> None:
    uris = ["mast:JWST/product/a.fits", "mast:JWST/product/b.fits", "mast:JWST/product/c.fits"]
    body = json.dumps(
        {
            uris[0]: {"status_code": 200, "path": "/jwst/public/jw1/a.fits"},
            uris[1]: {"status_code": 404, "path": None},
            "mast:JWST/product/other.fits": {"status_code": 200, "path": "/../../etc/passwd"},
        }
    ).encode()
    assert cloud.parse_lookup(body, uris) == {
        uris[0]: "jwst/public/jw1/a.fits",
        uris[1]: None,
        uris[2]: None,
    }
    evil = json.dumps({uris[0]: {"path": "/jwst/../../secret"}}).encode()
    assert cloud.parse_lookup(evil, uris[:1]) == {uris[0]: None}
    for bad in (b"[]", b"not json", b"\xff", b"{" * 10 + b" " * cloud.MAX_LOOKUP_BYTES):
        with pytest.raises(cloud.CloudPathError):
            cloud.parse_lookup(bad, uris)


def test_lookup_url_and_object_url() -> None:
    uris = ["mast:JWST/product/a b.fits", "mast:HST/product/x&y.fits"]
    url = cloud.lookup_url("https://mast.stsci.edu/", uris)
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/api/v0.1/path_lookup/"
    assert urllib.parse.parse_qs(parts.query)["uri"] == uris
    with pytest.raises(ValueError):
        cloud.lookup_url("https://mast.stsci.edu", ["u"] * (cloud.LOOKUP_CHUNK + 1))
    assert (
        cloud.object_url("https://stpubdata.s3.amazonaws.com/", "jwst/public/a b%.fits")
        == "https://stpubdata.s3.amazonaws.com/jwst/public/a%20b%25.fits"
    )


def test_missions_in_the_cloud() -> None:
    assert cloud.in_cloud_mission("mast:JWST/product/jw1.fits")
    assert cloud.in_cloud_mission("mast:hst/product/u9o4.fits")
    assert not cloud.in_cloud_mission("mast:SPITZER/url/x.fits")
    assert not cloud.in_cloud_mission("mast:HLA/url/cgi-bin/getdata.cgi?filename=x")
