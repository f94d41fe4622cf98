"""The simulator's profiles over real HTTP: the "mast" profile's manners, each knob shown
working, and the "fast" profile that stays as it was (issue 14, part 1).

The "mast" profile runs at the tests' time scale (`tests/support/sim.py`); nothing here bounds
a wall-clock time from above.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mastfs.sim import ffi, hla, profiles
from mastfs.sim.catalog import EXPIRED_TOKEN, SMALL_JSON_URI, UNAUTHORIZED_TOKEN
from mastfs.sim.faults import FaultConfigError
from tests.support.sim import Sim

DOWNLOAD = "/api/v0.1/Download/file"
LOG = hla.url_uri("hst_9998_01_acs_wfc_f606w", "hst_9998_01_acs_wfc_f606w_trl.txt")
PRODUCTS = "Mast.Caom.Products"


@pytest.fixture()
def client(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url, timeout=30, trust_env=False) as c:
        yield c


def _invoke(
    client: httpx.Client, service: str, params: dict[str, Any], breaker: str = "x"
) -> httpx.Response:
    body = {"service": service, "params": params, "pagesize": 50000, "cacheBreaker": breaker}
    return client.post(
        "/api/v0/invoke", content="request=" + urllib.parse.quote(json.dumps(body))
    )


def _obsids(sim: Sim, program: str) -> list[str]:
    rows = sim.server.catalog.observations
    return [str(o["obsid"]) for o in rows if str(o["proposal_id"]) == program]


def _ea_file(sim: Sim) -> str:
    return str(sim.pick(rights="EXCLUSIVE_ACCESS", proposal="6543", max_size=1 << 20).uri)


# -- profiles as data ----------------------------------------------------------------------------


def test_profiles_scale_times_and_bandwidth() -> None:
    real = profiles.settings("mast")
    fast = profiles.settings("mast", 0.1)
    assert (real.api_latency_ms, real.latency_ms, real.bandwidth) == (500, 80, 25_000_000)
    assert fast.api_latency_ms == pytest.approx(50) and fast.latency_ms == pytest.approx(8)
    assert fast.bandwidth == 250_000_000 and fast.no_etag == real.no_etag == "mast:"
    assert not profiles.settings("fast").active()
    assert profiles.settings("mast", 1.0, tess_ffi=False).tess_ffi is False
    with pytest.raises(FaultConfigError, match="unknown profile"):
        profiles.settings("slow")
    with pytest.raises(FaultConfigError, match="time_scale"):
        profiles.settings("mast", 0)


# -- API calls -----------------------------------------------------------------------------------


def test_api_latency_slows_api_calls_only(sim: Sim, client: httpx.Client) -> None:
    sim.faults(api_latency_ms=300)
    started = time.monotonic()
    assert client.get("/whoami").status_code == 200
    assert time.monotonic() - started >= 0.3
    # Downloads are not API calls: they take `latency_ms` only (here none), which the
    # redirect status shows as well as a clock could not.
    sim.faults(api_latency_ms=300, url_redirect=True)
    assert client.get(DOWNLOAD, params={"uri": LOG}).status_code == 302


def test_executing_polls_then_complete(sim: Sim, client: httpx.Client) -> None:
    sim.profile("mast", executing_polls=2)
    # Re-posts of one request (one cacheBreaker) are polls: EXECUTING twice, then the answer.
    first = [_invoke(client, PRODUCTS, {"obsid": "87602001"}, "a") for _ in range(3)]
    assert [r.json()["status"] for r in first] == ["EXECUTING", "EXECUTING", "COMPLETE"]
    assert first[-1].json()["data"]
    other = _invoke(client, PRODUCTS, {"obsid": "87602001"}, "b")
    assert other.json()["status"] == "EXECUTING"


def test_product_lists_reset_above_max_obs(sim: Sim, client: httpx.Client) -> None:
    sim.profile("mast", products_max_obs=5)
    obsids = _obsids(sim, "2734")
    ok = _invoke(client, PRODUCTS, {"obsid": ",".join(obsids[:5])})
    assert ok.status_code == 200 and ok.json()["status"] == "COMPLETE"
    with pytest.raises(httpx.TransportError):
        _invoke(client, PRODUCTS, {"obsid": ",".join(obsids[:6])})
    stats = sim.http.get("/__sim/stats").json()
    assert stats["services"][PRODUCTS + " (reset)"] == 1


def test_product_lists_reset_above_max_rows(sim: Sim, client: httpx.Client) -> None:
    obsids = _obsids(sim, "2734")
    rows = len(sim.server.catalog.products_for(obsids[0]))
    sim.profile("mast", products_max_rows=rows - 1)
    with pytest.raises(httpx.TransportError):
        _invoke(client, PRODUCTS, {"obsid": obsids[0]})
    sim.profile("mast", products_max_rows=rows)
    assert len(_invoke(client, PRODUCTS, {"obsid": obsids[0]}).json()["data"]) == rows


def test_503_bursts_with_retry_after(sim: Sim, client: httpx.Client) -> None:
    sim.profile("mast", burst_every=4, burst_length=2, retry_after=3)
    answers = [client.get("/whoami") for _ in range(8)]
    assert [r.status_code for r in answers] == [200, 200, 503, 503] * 2
    assert {r.headers.get("Retry-After") for r in answers if r.status_code == 503} == {"3"}


# -- authorization: 401 in every case under "mast" ------------------------------------------------


def test_authorization_failures(sim: Sim, client: httpx.Client, profile: str) -> None:
    uri = _ea_file(sim)
    answers = {
        who: client.head(DOWNLOAD, params={"uri": uri}, headers=headers).status_code
        for who, headers in (
            ("nobody", {}),
            ("bad", {"Authorization": "token not-a-token"}),
            ("expired", {"Authorization": f"token {EXPIRED_TOKEN}"}),
            ("no rights", {"Authorization": f"token {UNAUTHORIZED_TOKEN}"}),
        )
    }
    rights = 401 if profile == "mast" else 403
    assert answers == {"nobody": 401, "bad": 401, "expired": 401, "no rights": rights}
    whoami = client.get("/whoami", headers={"Authorization": f"token {EXPIRED_TOKEN}"})
    assert whoami.json()["anon"] is True


# -- downloads without ETag or Content-Length ---------------------------------------------------


def test_no_etag_last_modified_only(sim: Sim, client: httpx.Client, profile: str) -> None:
    f = sim.file(SMALL_JSON_URI)
    head = client.head(DOWNLOAD, params={"uri": f.uri})
    assert head.headers["Last-Modified"] and int(head.headers["Content-Length"]) == f.size
    assert ("ETag" in head.headers) == (profile == "fast")
    since = {"If-Modified-Since": head.headers["Last-Modified"]}
    assert client.get(DOWNLOAD, params={"uri": f.uri}, headers=since).status_code == 304
    part = client.get(DOWNLOAD, params={"uri": f.uri}, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == sim.expected(f.uri, 10, 90)


def test_no_length_is_chunked(sim: Sim, client: httpx.Client) -> None:
    f = sim.file(SMALL_JSON_URI)
    sim.faults(no_length="mast:")
    whole = client.get(DOWNLOAD, params={"uri": f.uri})
    assert "Content-Length" not in whole.headers
    assert whole.headers["Transfer-Encoding"] == "chunked"
    assert whole.content == sim.expected(f.uri, 0, f.size)
    part = client.get(DOWNLOAD, params={"uri": f.uri}, headers={"Range": "bytes=5-"})
    assert part.status_code == 206 and part.content == sim.expected(f.uri, 5, f.size)


# -- /url/ products on a second host ---------------------------------------------------------------


def test_url_products(sim: Sim, client: httpx.Client, profile: str) -> None:
    f = sim.file(LOG)
    expected = sim.expected(LOG, 0, f.size)
    answer = client.get(DOWNLOAD, params={"uri": LOG}, headers={"Range": "bytes=0-99"})
    if profile == "fast":
        assert answer.status_code == 206 and answer.content == expected[:100]
        return
    assert answer.status_code == 302
    location = answer.headers["Location"]
    files = urllib.parse.urlsplit(sim.urls()["files_url"])
    there = urllib.parse.urlsplit(location)
    assert (there.hostname, there.port) == (files.hostname, files.port)
    archive = urllib.parse.urlsplit(sim.url)
    assert (there.hostname, there.port) != (archive.hostname, archive.port)
    with httpx.Client(timeout=30, trust_env=False) as other:
        body = other.get(location, headers={"Range": "bytes=0-99"})
        # The second host ignores Range and sends no Content-Length (a generated file).
        assert body.status_code == 200 and body.content == expected
        assert "Content-Length" not in body.headers and "ETag" not in body.headers
        other.get(location, headers={"Authorization": "token stray"})
    stats = sim.file_stats(LOG)
    assert stats["hosts"] == {"archive": 1, "files": 2} and stats["tokens_elsewhere"] == 1


# -- the resolver, a service of its own ----------------------------------------------------------


def test_resolver_host_answers_astroquery(
    sim: Sim, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astroquery.mast import utils

    resolver = sim.urls()["resolver_url"]
    assert urllib.parse.urlsplit(resolver).port != urllib.parse.urlsplit(sim.url).port
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    # astroquery's resolver host is hard-coded: proxied to the simulator's resolver host.
    monkeypatch.setenv("HTTP_PROXY", resolver)
    coord = utils.resolve_object("Crab Nebula")
    assert (coord.ra.deg, coord.dec.deg) == pytest.approx((hla.RA, hla.DEC))
    stats = sim.http.get("/__sim/stats").json()["endpoints"]
    assert stats.get("santa") == 1


# -- TESS full-frame images in cone searches -------------------------------------------------------


def test_cone_finds_tess_ffis_astroquery_leaves_out(sim: Sim, profile: str) -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astroquery.mast import Observations as obs

    table = obs.query_region(SkyCoord(hla.RA, hla.DEC, unit="deg"), radius=0.1 * u.deg)
    targets = [str(t) for t in table["target_name"]]
    ffis = [t for t in targets if t in (ffi.TESS_FFI, ffi.TICA_FFI)]
    assert len(ffis) == (3 if profile == "mast" else 0)
    products = obs.get_product_list(table)
    assert {str(c) for c in products["obs_collection"]} == {"HLA"}
