"""Unmodified astroquery 0.4.x against the archive simulator, in process, over real HTTP.

conftest.py writes astroquery's config (`[mast] server = <simulator>`) before astroquery is
imported; nothing in astroquery is patched. Its SANTA name resolver has a hard-coded host, so
`query_object` reaches the simulator through `HTTP_PROXY` (the simulator serves absolute-form
requests), which is how any unmodified client can be redirected.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astroquery.exceptions import LoginError
from astroquery.mast import Observations

from mastfs.sim.catalog import AUTHORIZED_TOKEN, TOKENS, UNAUTHORIZED_TOKEN
from mastfs.sim.server import SimServer


@pytest.fixture()
def obs(sim_server: SimServer, sim_url: str) -> Iterator[Any]:
    assert Observations._portal_api_connection.MAST_REQUEST_URL.startswith(sim_url)
    if hasattr(Observations, "disable_cloud_dataset"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Observations.disable_cloud_dataset()
    try:
        yield Observations
    finally:
        Observations.logout()
        sim_server.faults.clear()


def _observations(sim: SimServer) -> list[dict[str, Any]]:
    return list(sim.catalog.observations)


def _resolve(sim: SimServer, name: str) -> tuple[float, float, str]:
    hit = sim.catalog.resolve(name)
    assert hit is not None, name
    return hit


def _program_obs(sim: SimServer, proposal: str) -> list[dict[str, Any]]:
    return [o for o in _observations(sim) if str(o["proposal_id"]) == proposal]


def _small_file(sim: SimServer, proposal: str, rights: str) -> Any:
    files = sorted(
        (
            f
            for f in sim.catalog.files()
            if str(f.proposal_id) == proposal
            and f.dataRights == rights
            and f.filename.endswith(".fits")
            and f.size <= 8 << 20
        ),
        key=lambda f: (f.size, f.uri),
    )
    assert files, f"no small FITS file for {proposal} ({rights})"
    return files[len(files) // 2]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_query_criteria_program(obs: Any, sim_server: SimServer) -> None:
    table = obs.query_criteria(obs_collection="JWST", proposal_id="2734")
    expected = {str(o["obsid"]) for o in _program_obs(sim_server, "2734")}
    assert len(table) == len(expected) > 0
    assert {str(x) for x in table["obsid"]} == expected
    assert set(table["proposal_id"]) == {"2734"}
    assert {"obs_id", "s_ra", "s_dec", "t_min", "dataURL", "instrument_name"} <= set(table.colnames)
    assert obs.query_criteria_count(obs_collection="JWST", proposal_id="2734") == len(expected)


def test_query_criteria_paging(obs: Any, sim_server: SimServer) -> None:
    # astroquery walks the pages by rewriting `"page": N,` in the request body.
    table = obs.query_criteria(proposal_id="2734", pagesize=2)
    assert len(table) == len(_program_obs(sim_server, "2734"))
    assert len(set(table["obsid"])) == len(table)


def test_query_criteria_wildcard_and_ranges(obs: Any, sim_server: SimServer) -> None:
    rows = _program_obs(sim_server, "2734")
    t = sorted(o["t_min"] for o in rows)
    lo, hi = t[0], t[len(t) // 2]
    table = obs.query_criteria(proposal_id="273*", t_min=[lo, hi], calib_level=[2, 3])
    expected = {
        str(o["obsid"])
        for o in _observations(sim_server)
        if str(o["proposal_id"]).startswith("273")
        and o.get("t_min") is not None
        and lo <= o["t_min"] <= hi
        and o["calib_level"] in (2, 3)
    }
    assert expected
    assert {str(x) for x in table["obsid"]} == expected
    # Matching is case-insensitive, as on MAST.
    target = rows[0]["target_name"]
    by_name = obs.query_criteria(target_name=target.lower(), proposal_id="2734")
    assert len(by_name) == sum(1 for o in rows if o["target_name"] == target)


def test_query_region(obs: Any, sim_server: SimServer) -> None:
    o = _program_obs(sim_server, "2734")[0]
    table = obs.query_region(SkyCoord(o["s_ra"], o["s_dec"], unit="deg"), radius=0.02 * u.deg)
    assert str(o["obsid"]) in {str(x) for x in table["obsid"]}
    assert "distance" in table.colnames
    assert np.all(table["distance"] <= 0.02 * 3600 + 1e-6)
    positional = obs.query_criteria(
        coordinates=SkyCoord(o["s_ra"], o["s_dec"], unit="deg"), radius=0.02, proposal_id="2734"
    )
    assert str(o["obsid"]) in {str(x) for x in positional["obsid"]}


def test_query_object_through_proxy(
    obs: Any, sim_server: SimServer, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = next(
        o["target_name"]
        for o in _program_obs(sim_server, "2734")
        if sim_server.catalog.resolve(o["target_name"])
    )
    ra, dec, _ = _resolve(sim_server, name)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    # SANTA's host (http://mastresolver.stsci.edu) is hard-coded in astroquery 0.4.11.
    monkeypatch.setenv("HTTP_PROXY", sim_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    coord = obs.resolve_object(name)
    assert (coord.ra.deg, coord.dec.deg) == pytest.approx((ra, dec))
    table = obs.query_object(name, radius=0.05 * u.deg)
    assert len(table) > 0
    assert all(table["distance"] <= 0.05 * 3600 + 1e-6)


def test_products_and_filter(obs: Any, sim_server: SimServer) -> None:
    table = obs.query_criteria(obs_collection="JWST", proposal_id="2734")
    products = obs.get_product_list(table[:3])
    wanted = [str(x) for x in table["obsid"][:3]]
    assert len(products) == sum(len(sim_server.catalog.products_for(w)) for w in wanted)
    assert {str(x) for x in products["parent_obsid"]} == set(wanted)
    assert {"dataURI", "productFilename", "size", "productSubGroupDescription"} <= set(
        products.colnames
    )
    mrp = products[products["productGroupDescription"] == "Minimum Recommended Products"]
    assert len(mrp) > 0
    subgroup, _ = Counter(str(x) for x in mrp["productSubGroupDescription"]).most_common(1)[0]
    picked = obs.filter_products(products, productSubGroupDescription=subgroup, mrp_only=True)
    assert len(picked) == sum(1 for r in mrp if r["productSubGroupDescription"] == subgroup)
    assert set(picked["productSubGroupDescription"]) == {subgroup}
    unique = obs.get_unique_product_list(table[:3])
    assert len(unique) == len(set(products["dataURI"]))


def test_get_metadata(obs: Any) -> None:
    observations = obs.get_metadata("observations")
    names = set(observations["Column Name"])
    assert {"obs_collection", "proposal_id", "s_ra", "t_min", "obsid"} <= names
    products = obs.get_metadata("products")
    assert {"parent_obsid", "dataURI", "productSubGroupDescription"} <= set(products["Column Name"])


def test_download_public_fits(obs: Any, sim_server: SimServer, tmp_path: Path) -> None:
    f = _small_file(sim_server, "2734", "PUBLIC")
    target = tmp_path / f.filename
    status, msg, _ = obs.download_file(f.uri, local_path=str(target), cache=False, verbose=False)
    assert (status, msg) == ("COMPLETE", None)
    assert target.stat().st_size == f.size
    assert _sha256(target) == f.sha256()
    with fits.open(target) as hdul:
        header = hdul[0].header
        assert header["TELESCOP"] == "JWST"
        assert str(header["PROGRAM"]).lstrip("0") == "2734"
        assert header["OBS_ID"]


def test_login(obs: Any) -> None:
    obs.login(token=AUTHORIZED_TOKEN)
    info = obs.session_info(verbose=False)
    assert info["anon"] is False
    assert info["attrib"]["display_name"] == TOKENS[AUTHORIZED_TOKEN].display_name
    obs.logout()
    # A valid token of a user without exclusive-access rights still logs in.
    obs.login(token=UNAUTHORIZED_TOKEN)
    assert obs.session_info(verbose=False)["attrib"]["display_name"] == (
        TOKENS[UNAUTHORIZED_TOKEN].display_name
    )
    obs.logout()
    with pytest.raises(LoginError):
        obs.login(token="not-a-mast-token")


def test_exclusive_access_download(obs: Any, sim_server: SimServer, tmp_path: Path) -> None:
    f = _small_file(sim_server, "6543", "EXCLUSIVE_ACCESS")
    target = tmp_path / f.filename
    status, msg, _ = obs.download_file(f.uri, local_path=str(target), cache=False, verbose=False)
    assert status == "ERROR" and "401" in msg
    obs.login(token=UNAUTHORIZED_TOKEN)
    status, msg, _ = obs.download_file(f.uri, local_path=str(target), cache=False, verbose=False)
    assert status == "ERROR" and "403" in msg
    obs.logout()
    obs.login(token=AUTHORIZED_TOKEN)
    status, msg, _ = obs.download_file(f.uri, local_path=str(target), cache=False, verbose=False)
    assert (status, msg) == ("COMPLETE", None)
    assert _sha256(target) == f.sha256()


def test_polling_while_executing(obs: Any, sim_server: SimServer) -> None:
    # MAST answers EXECUTING until a query is done; astroquery re-posts the same request.
    sim_server.faults.update({"executing_polls": 2})
    sim_server.stats.reset()
    table = obs.query_criteria(proposal_id="2734")
    assert len(table) == len(_program_obs(sim_server, "2734"))
    assert sim_server.stats.to_json()["services"]["Mast.Caom.Filtered"] == 3
