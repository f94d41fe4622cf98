"""The archive simulator over real HTTP on loopback: ranges, validators, access rules, the Portal
API's paging/filters/errors, stats, every fault knob, the directory view and the CLI."""

from __future__ import annotations

import concurrent.futures
import html
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx
import pytest

from mastfs.sim.catalog import AUTHORIZED_TOKEN, BIG_4G_URI, HOSTILE_URI, UNAUTHORIZED_TOKEN
from mastfs.sim.server import SimServer, parse_range

ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD = "/api/v0.1/Download/file"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture()
def sim(sim_server: SimServer) -> Iterator[SimServer]:
    """The session simulator, with faults cleared afterwards whatever the test did."""
    try:
        yield sim_server
    finally:
        sim_server.faults.clear()


@pytest.fixture()
def client(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim_url, timeout=30, trust_env=False) as c:
        yield c


def _observations(sim: SimServer) -> list[dict[str, Any]]:
    return list(sim.catalog.observations)


def _resolve(sim: SimServer, name: str) -> tuple[float, float, str]:
    hit = sim.catalog.resolve(name)
    assert hit is not None, name
    return hit


def _file(sim: SimServer, uri: str) -> Any:
    f = sim.catalog.file(uri)
    assert f is not None, uri
    return f


def _pick(sim: SimServer, rights: str, proposal: str | None = None, index: int = 0) -> Any:
    files = sorted(
        (
            f
            for f in sim.catalog.files()
            if f.dataRights == rights
            and f.filename.endswith(".fits")
            and 4096 <= f.size <= 4 << 20
            and (proposal is None or str(f.proposal_id) == proposal)
        ),
        key=lambda f: f.uri,
    )
    assert files, f"catalog has no small {rights} file for {proposal}"
    return files[index % len(files)]


@pytest.fixture()
def public_file(sim: SimServer) -> Any:
    return _pick(sim, "PUBLIC", "2734")


@pytest.fixture()
def ea_file(sim: SimServer) -> Any:
    return _pick(sim, "EXCLUSIVE_ACCESS", "6543")


def _params(f: Any) -> dict[str, str]:
    return {"uri": f.uri}


def invoke(client: httpx.Client, request: dict[str, Any]) -> httpx.Response:
    body = "request=" + quote(json.dumps(request))
    return client.post(
        "/api/v0/invoke",
        content=body,
        headers={"Content-type": "application/x-www-form-urlencoded", "Accept": "text/plain"},
    )


def filtered(filters: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "service": "Mast.Caom.Filtered",
        "params": {"columns": "*", "filters": filters},
        "format": "json",
        "pagesize": 50000,
        "page": 1,
    }
    req.update(extra)
    return req


PROGRAM_2734 = [
    {"paramName": "obs_collection", "separator": ";", "values": ["JWST"]},
    {"paramName": "proposal_id", "values": ["2734"]},
]


# -- ranges and validators -----------------------------------------------------------------------


def test_parse_range_rules() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-200", 100) == (90, 99)
    assert parse_range("bytes=95-", 100) == (95, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-1000", 100) == (0, 99)
    assert parse_range("bytes=9-3", 100) is None  # invalid: ignored
    assert parse_range("bytes=0-1,5-6", 100) is None  # multi-range: whole body
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=100-", 100) is not None and not isinstance(
        parse_range("bytes=100-", 100), tuple
    )
    assert not isinstance(parse_range("bytes=-0", 100), tuple)


def test_full_get_and_head_headers(client: httpx.Client, public_file: Any) -> None:
    head = client.head(DOWNLOAD, params=_params(public_file))
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) == public_file.size
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["ETag"].strip('"') == public_file.etag.strip('"')
    assert head.headers["Last-Modified"].endswith("GMT")
    assert head.headers["Content-Type"] == "application/fits"
    got = client.get(DOWNLOAD, params=_params(public_file))
    assert got.status_code == 200
    assert got.content == bytes(public_file.read(0, public_file.size))
    assert got.headers["ETag"] == head.headers["ETag"]
    # The ETag is stable across requests.
    assert (
        client.head(DOWNLOAD, params=_params(public_file)).headers["ETag"] == head.headers["ETag"]
    )


def test_range_requests(client: httpx.Client, public_file: Any) -> None:
    size = public_file.size
    whole = bytes(public_file.read(0, size))
    cases = {
        "bytes=0-99": (0, 99),
        "bytes=1000-2879": (1000, 2879),
        f"bytes={size - 10}-": (size - 10, size - 1),
        "bytes=-500": (size - 500, size - 1),
        f"bytes=100-{size + 5000}": (100, size - 1),
    }
    for header, (a, b) in cases.items():
        r = client.get(DOWNLOAD, params=_params(public_file), headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["Content-Range"] == f"bytes {a}-{b}/{size}", header
        assert int(r.headers["Content-Length"]) == b - a + 1
        assert r.content == whole[a : b + 1], header


def test_unsatisfiable_and_multi_range(client: httpx.Client, public_file: Any) -> None:
    size = public_file.size
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        r = client.get(DOWNLOAD, params=_params(public_file), headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["Content-Range"] == f"bytes */{size}"
    r = client.get(DOWNLOAD, params=_params(public_file), headers={"Range": "bytes=0-1,5-9"})
    assert r.status_code == 200
    assert len(r.content) == size


def test_head_with_range(client: httpx.Client, public_file: Any) -> None:
    r = client.head(DOWNLOAD, params=_params(public_file), headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.headers["Content-Length"] == "10"
    assert r.content == b""


def test_conditional_requests(client: httpx.Client, public_file: Any) -> None:
    etag = client.head(DOWNLOAD, params=_params(public_file)).headers["ETag"]
    lm = client.head(DOWNLOAD, params=_params(public_file)).headers["Last-Modified"]
    p = _params(public_file)
    ok = client.get(DOWNLOAD, params=p, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert ok.status_code == 206
    by_date = client.get(DOWNLOAD, params=p, headers={"Range": "bytes=0-9", "If-Range": lm})
    assert by_date.status_code == 206
    stale = client.get(DOWNLOAD, params=p, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200
    assert len(stale.content) == public_file.size
    assert client.get(DOWNLOAD, params=p, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(DOWNLOAD, params=p, headers={"If-None-Match": '"x"'}).status_code == 200
    assert client.get(DOWNLOAD, params=p, headers={"If-Match": '"x"'}).status_code == 412


def test_ranges_beyond_4_gib(client: httpx.Client, sim: SimServer) -> None:
    f = _file(sim, BIG_4G_URI)
    assert f.size > 1 << 32
    head = client.head(DOWNLOAD, params={"uri": BIG_4G_URI})
    assert int(head.headers["Content-Length"]) == f.size
    a = (1 << 32) + 12345
    r = client.get(DOWNLOAD, params={"uri": BIG_4G_URI}, headers={"Range": f"bytes={a}-{a + 99}"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {a}-{a + 99}/{f.size}"
    assert r.content == bytes(f.read(a, 100))
    tail = client.get(DOWNLOAD, params={"uri": BIG_4G_URI}, headers={"Range": "bytes=-100"})
    assert tail.content == bytes(f.read(f.size - 100, 100))


def test_unknown_uri_is_404_json(client: httpx.Client) -> None:
    r = client.get(DOWNLOAD, params={"uri": "mast:JWST/product/nope_cal.fits"})
    assert r.status_code == 404
    assert r.json()["status"] == "ERROR"
    assert client.get(DOWNLOAD).status_code == 400


def test_keep_alive_reuses_the_connection(sim_url: str, public_file: Any) -> None:
    host, port = sim_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        path = f"{DOWNLOAD}?uri={quote(public_file.uri, safe=':/')}"
        conn.request("GET", path, headers={"Range": "bytes=0-9"})
        first = conn.getresponse()
        assert first.status == 206 and len(first.read()) == 10
        sock = conn.sock
        conn.request("HEAD", path)
        second = conn.getresponse()
        second.read()
        conn.request("GET", "/whoami")
        third = conn.getresponse()
        assert json.loads(third.read())["anon"] is True
        assert second.status == 200 and conn.sock is sock
    finally:
        conn.close()


# -- access rules --------------------------------------------------------------------------------


def test_exclusive_access_rules(client: httpx.Client, ea_file: Any, public_file: Any) -> None:
    p = _params(ea_file)
    assert client.get(DOWNLOAD, params=p).status_code == 401
    assert client.head(DOWNLOAD, params=p).status_code == 401
    bad = {"Authorization": "token not-a-real-token"}
    assert client.get(DOWNLOAD, params=p, headers=bad).status_code == 401
    no = {"Authorization": f"token {UNAUTHORIZED_TOKEN}"}
    r = client.get(DOWNLOAD, params=p, headers=no)
    assert r.status_code == 403
    assert r.json()["status"] == "ERROR"
    yes = {"Authorization": f"token {AUTHORIZED_TOKEN}"}
    r = client.get(DOWNLOAD, params=p, headers=yes)
    assert r.status_code == 200
    assert r.content == bytes(ea_file.read(0, ea_file.size))
    bearer = {"Authorization": f"Bearer {AUTHORIZED_TOKEN}"}
    assert client.head(DOWNLOAD, params=p, headers=bearer).status_code == 200
    cookie = {"Cookie": f"mast_token={AUTHORIZED_TOKEN}"}
    assert client.get(DOWNLOAD, params=p, headers=cookie).status_code == 200
    cookie = {"Cookie": f"mast_token={UNAUTHORIZED_TOKEN}"}
    assert client.get(DOWNLOAD, params=p, headers=cookie).status_code == 403
    # Public files need no credentials.
    assert client.head(DOWNLOAD, params=_params(public_file)).status_code == 200


def test_whoami(client: httpx.Client) -> None:
    me = client.get("/whoami", headers={"Cookie": f"mast_token={AUTHORIZED_TOKEN}"}).json()
    assert me["anon"] is False
    assert me["attrib"]["display_name"]
    assert "mast:exclusive_access" in me["scopes"]
    other = client.get("/whoami", headers={"Authorization": f"token {UNAUTHORIZED_TOKEN}"})
    assert other.json()["anon"] is False
    assert client.get("/whoami", headers={"Cookie": "mast_token=bogus"}).json()["anon"] is True
    assert client.get("/whoami").json()["anon"] is True


# -- Portal API ----------------------------------------------------------------------------------


def test_filtered_query_and_paging(client: httpx.Client, sim: SimServer) -> None:
    expected = sorted(
        str(o["obsid"])
        for o in _observations(sim)
        if o["obs_collection"] == "JWST" and str(o["proposal_id"]) == "2734"
    )
    assert len(expected) >= 3
    whole = invoke(client, filtered(PROGRAM_2734)).json()
    assert whole["status"] == "COMPLETE"
    assert sorted(str(r["obsid"]) for r in whole["data"]) == expected
    assert whole["paging"]["rowsFiltered"] == len(expected)
    names = [f["name"] for f in whole["fields"]]
    assert "obs_id" in names and "s_ra" in names
    # Small pages: concatenated, they are the whole answer, without overlap.
    size = 2
    pages = -(-len(expected) // size)
    got: list[str] = []
    for page in range(1, pages + 2):
        r = invoke(client, filtered(PROGRAM_2734, pagesize=size, page=page)).json()
        assert r["paging"]["pagesFiltered"] == pages
        assert r["paging"]["page"] == page
        got += [str(row["obsid"]) for row in r["data"]]
    assert sorted(got) == expected


def test_filter_semantics(client: httpx.Client, sim: SimServer) -> None:
    obs = [o for o in _observations(sim) if str(o["proposal_id"]) == "2734"]
    target = obs[0]["target_name"]
    # Case-insensitive exact values.
    r = invoke(client, filtered([{"paramName": "target_name", "values": [target.swapcase()]}]))
    assert {row["target_name"] for row in r.json()["data"]} == {target}
    # freeText wildcard: a prefix with % finds the same rows.
    r = invoke(
        client,
        filtered([{"paramName": "proposal_id", "values": [], "freeText": "273%"}]),
    ).json()
    assert {str(row["proposal_id"]) for row in r["data"]} >= {"2734"}
    assert all(str(row["proposal_id"]).startswith("273") for row in r["data"])
    # Ranges on a continuous column, inclusive.
    t = sorted(o["t_min"] for o in obs if o.get("t_min") is not None)
    lo, hi = t[0], t[len(t) // 2]
    r = invoke(
        client,
        filtered([*PROGRAM_2734, {"paramName": "t_min", "values": [{"min": lo, "max": hi}]}]),
    ).json()
    assert r["data"] and all(lo <= row["t_min"] <= hi for row in r["data"])
    assert len(r["data"]) == sum(1 for x in t if lo <= x <= hi)
    # Discrete numeric values arrive as strings and OR together.
    r = invoke(
        client, filtered([*PROGRAM_2734, {"paramName": "calib_level", "values": ["2", "3"]}])
    )
    assert {row["calib_level"] for row in r.json()["data"]} <= {2, 3}
    # Case-insensitive column names, as astroquery passes the user's spelling.
    r = invoke(client, filtered([{"paramName": "PROPOSAL_ID", "values": ["2734"]}])).json()
    assert len(r["data"]) == len(obs)


def test_count_query(client: httpx.Client, sim: SimServer) -> None:
    req = filtered(PROGRAM_2734)
    req["params"]["columns"] = "COUNT_BIG(*)"
    r = invoke(client, req).json()
    n = sum(1 for o in _observations(sim) if str(o["proposal_id"]) == "2734")
    assert r["data"] == [{"Column1": n}]


def test_position_and_cone(client: httpx.Client, sim: SimServer) -> None:
    o = next(o for o in _observations(sim) if str(o["proposal_id"]) == "2734")
    cone = invoke(
        client,
        {
            "service": "Mast.Caom.Cone",
            "params": {"ra": o["s_ra"], "dec": o["s_dec"], "radius": 0.01},
            "format": "json",
            "pagesize": 50000,
            "page": 1,
        },
    ).json()
    assert cone["status"] == "COMPLETE"
    assert str(o["obsid"]) in {str(r["obsid"]) for r in cone["data"]}
    assert all(r["distance"] <= 0.01 * 3600 + 1e-6 for r in cone["data"])
    assert "distance" in [f["name"] for f in cone["fields"]]
    pos = invoke(
        client,
        {
            "service": "Mast.Caom.Filtered.Position",
            "params": {
                "columns": "*",
                "filters": PROGRAM_2734,
                "position": f"{o['s_ra']}, {o['s_dec']}, 0.01",
            },
            "format": "json",
            "pagesize": 50000,
            "page": 1,
        },
    ).json()
    assert pos["data"] and all(str(r["proposal_id"]) == "2734" for r in pos["data"])
    far = invoke(
        client,
        {
            "service": "Mast.Caom.Cone",
            "params": {"ra": (o["s_ra"] + 180) % 360, "dec": -o["s_dec"], "radius": 0.001},
            "format": "json",
            "pagesize": 50000,
            "page": 1,
        },
    ).json()
    assert str(o["obsid"]) not in {str(r["obsid"]) for r in far["data"]}


def test_products_service(client: httpx.Client, sim: SimServer) -> None:
    obs = [o for o in _observations(sim) if str(o["proposal_id"]) == "2734"][:2]
    ids = ",".join(str(o["obsid"]) for o in obs)
    r = invoke(
        client,
        {
            "service": "Mast.Caom.Products",
            "params": {"obsid": ids},
            "format": "json",
            "pagesize": 50000,
            "page": 1,
        },
    ).json()
    assert r["status"] == "COMPLETE"
    expected = sum(len(sim.catalog.products_for(str(o["obsid"]))) for o in obs)
    assert len(r["data"]) == expected > 0
    assert {str(row["parent_obsid"]) for row in r["data"]} == {str(o["obsid"]) for o in obs}
    assert [f["name"] for f in r["fields"]][-1] == "_selected_"


def test_columns_config(client: httpx.Client) -> None:
    cone = client.post(
        "/portal/Mashup/Mashup.asmx/columnsconfig", data={"colConfigId": "Mast.Caom.Cone"}
    ).json()
    assert "obs_id" in cone and "s_ra" in cone
    products = client.post(
        "/portal/Mashup/Mashup.asmx/columnsconfig", data={"colConfigId": "Mast.Caom.Products"}
    ).json()
    assert "parent_obsid" in products
    assert (
        client.post(
            "/portal/Mashup/Mashup.asmx/columnsconfig", data={"colConfigId": "No.Such"}
        ).json()
        == {}
    )


def test_name_resolution(client: httpx.Client, sim: SimServer) -> None:
    name = next(
        o["target_name"] for o in _observations(sim) if sim.catalog.resolve(o["target_name"])
    )
    ra, dec, _ = _resolve(sim, name)
    santa = client.get(
        "/Santa-war/query", params={"name": name, "outputFormat": "json", "resolveAll": "false"}
    ).json()
    hit = santa["resolvedCoordinate"][0]
    assert hit["searchString"] == name.lower() and (hit["ra"], hit["decl"]) == (ra, dec)
    lookup = client.get(
        "/api/v0/invoke",
        params={
            "request": json.dumps(
                {"service": "Mast.Name.Lookup", "params": {"input": name, "format": "json"}}
            )
        },
    ).json()
    assert lookup["resolvedCoordinate"][0]["decl"] == dec
    none = client.get("/Santa-war/query", params={"name": "no such object 12345"}).json()
    assert none["resolvedCoordinate"] == []


def test_error_json(client: httpx.Client) -> None:
    r = invoke(client, {"service": "Mast.No.Such", "params": {}})
    assert (
        r.status_code == 200 and r.json()["status"] == "ERROR" and "Mast.No.Such" in r.json()["msg"]
    )
    r = invoke(client, filtered([{"paramName": "no_such_column", "values": ["x"]}]))
    assert r.json()["status"] == "ERROR" and "no_such_column" in r.json()["msg"]
    r = client.post(
        "/api/v0/invoke",
        content="request=%7Bnot json",
        headers={"Content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and r.json()["status"] == "ERROR"
    r = client.post("/api/v0/invoke", content="")
    assert r.status_code == 400 and r.json()["status"] == "ERROR"
    r = invoke(client, filtered([]))
    assert r.json()["status"] == "ERROR"
    r = invoke(client, filtered(PROGRAM_2734, pagesize=0))
    assert r.json()["status"] == "ERROR"
    for r in (client.get("/no/such/endpoint"), client.delete("/api/v0/invoke")):
        assert r.status_code in (404, 405) and r.json()["status"] == "ERROR"
        assert "Traceback" not in r.text


def test_get_invoke_with_request_param(client: httpx.Client) -> None:
    r = client.get("/api/v0/invoke", params={"request": json.dumps(filtered(PROGRAM_2734))})
    assert r.json()["status"] == "COMPLETE" and r.json()["data"]


def test_concurrent_metadata_queries_and_range_streams(
    sim_url: str, sim: SimServer, public_file: Any
) -> None:
    def query(_: int) -> int:
        with httpx.Client(base_url=sim_url, timeout=60, trust_env=False) as c:
            r = invoke(c, filtered(PROGRAM_2734))
            assert r.json()["status"] == "COMPLETE"
            return len(r.json()["data"])

    size = public_file.size
    whole = bytes(public_file.read(0, size))
    part = size // 16

    def stream(i: int) -> bool:
        with httpx.Client(base_url=sim_url, timeout=60, trust_env=False) as c:
            a = i * part
            r = c.get(
                DOWNLOAD,
                params=_params(public_file),
                headers={"Range": f"bytes={a}-{a + part - 1}"},
            )
            return r.status_code == 206 and r.content == whole[a : a + part]

    with concurrent.futures.ThreadPoolExecutor(max_workers=66) as pool:
        counts = list(pool.map(query, range(50)))
        streams = list(pool.map(stream, range(16)))
    assert len(set(counts)) == 1 and counts[0] > 0
    assert all(streams)


# -- stats ---------------------------------------------------------------------------------------


def test_stats_and_reset(client: httpx.Client, public_file: Any) -> None:
    assert client.post("/__sim/stats/reset").json()["status"] == "OK"
    p = _params(public_file)
    client.head(DOWNLOAD, params=p)
    client.get(DOWNLOAD, params=p, headers={"Range": "bytes=0-99"})
    client.get(DOWNLOAD, params=p)
    invoke(client, filtered(PROGRAM_2734))
    stats = client.get("/__sim/stats").json()
    mine = stats["files"][public_file.uri]
    assert mine["requests"] == 3
    assert mine["bytes"] == 100 + public_file.size
    assert mine["methods"] == {"HEAD": 1, "GET": 2}
    assert mine["status"] == {"200": 2, "206": 1}
    assert stats["services"]["Mast.Caom.Filtered"] == 1
    assert stats["totals"]["requests"] == 4
    assert stats["totals"]["file_bytes"] == 100 + public_file.size
    client.post("/__sim/stats/reset")
    after = client.get("/__sim/stats").json()
    assert after["files"] == {} and after["totals"]["requests"] == 0


# -- faults --------------------------------------------------------------------------------------


def set_faults(client: httpx.Client, **knobs: Any) -> dict[str, Any]:
    r = client.post("/__sim/faults", json=knobs)
    assert r.status_code == 200, r.text
    return r.json()


def test_fault_config_errors(client: httpx.Client, sim: SimServer) -> None:
    assert client.post("/__sim/faults", json={"bogus": 1}).status_code == 400
    assert client.post("/__sim/faults", json={"error_rate": 2}).status_code == 400
    assert client.post("/__sim/faults", content="{").status_code == 400
    assert client.get("/__sim/faults").json()["error_rate"] == 0.0
    assert not sim.faults.active


def test_error_rate_is_deterministic(client: httpx.Client, public_file: Any) -> None:
    set_faults(client, error_rate=0.5, scope=public_file.uri)
    codes = [client.head(DOWNLOAD, params=_params(public_file)).status_code for _ in range(6)]
    assert codes == [200, 503, 200, 503, 200, 503]
    # Out of scope: never faulted.
    assert invoke(client, filtered(PROGRAM_2734)).status_code == 200
    set_faults(client, error_rate=1.0, error_status=500, error_downloads_only=True, scope="")
    assert client.get(DOWNLOAD, params=_params(public_file)).status_code == 500
    assert invoke(client, filtered(PROGRAM_2734)).json()["status"] == "COMPLETE"
    set_faults(client, error_downloads_only=False, max_faults=1)
    assert invoke(client, filtered(PROGRAM_2734)).status_code == 500
    assert invoke(client, filtered(PROGRAM_2734)).status_code == 200


def test_ignore_range(client: httpx.Client, public_file: Any) -> None:
    set_faults(client, ignore_range=True)
    r = client.get(DOWNLOAD, params=_params(public_file), headers={"Range": "bytes=0-9"})
    assert r.status_code == 200
    assert len(r.content) == public_file.size
    assert "Content-Range" not in r.headers


def test_reset_mid_body(client: httpx.Client, public_file: Any) -> None:
    client.post("/__sim/stats/reset")
    set_faults(client, reset_after=1000, max_faults=1)
    # The HEAD does not use up the one-shot fault; the GET does.
    assert client.head(DOWNLOAD, params=_params(public_file)).status_code == 200
    with pytest.raises(httpx.TransportError):
        client.get(DOWNLOAD, params=_params(public_file))
    r = client.get(DOWNLOAD, params=_params(public_file))
    assert r.status_code == 200 and len(r.content) == public_file.size
    mine = client.get("/__sim/stats").json()["files"][public_file.uri]
    assert mine["resets"] == 1
    set_faults(client, reset_fraction=0.5, max_faults=None)
    with pytest.raises(httpx.TransportError):
        client.get(DOWNLOAD, params=_params(public_file))


def test_stall_latency_bandwidth(client: httpx.Client, public_file: Any) -> None:
    # Lower bounds only: a sleep is never shorter than asked.
    whole = bytes(public_file.read(0, public_file.size))
    set_faults(client, stall_after=100, stall_seconds=0.3)
    t = time.monotonic()
    r = client.get(DOWNLOAD, params=_params(public_file))
    assert time.monotonic() - t >= 0.3
    assert r.content == whole
    set_faults(client, stall_seconds=3.0)
    with pytest.raises(httpx.ReadTimeout):
        client.get(DOWNLOAD, params=_params(public_file), timeout=httpx.Timeout(30, read=0.2))
    client.post("/__sim/faults/reset")
    set_faults(client, latency_ms=200)
    t = time.monotonic()
    assert client.get("/whoami").status_code == 200
    assert time.monotonic() - t >= 0.2
    # At twice the body's size per second, the body takes half a second, less one write step.
    n = min(public_file.size, 32768)
    set_faults(client, latency_ms=0, bandwidth=2 * n)
    t = time.monotonic()
    r = client.get(DOWNLOAD, params=_params(public_file), headers={"Range": f"bytes=0-{n - 1}"})
    assert time.monotonic() - t >= 0.3
    assert r.content == whole[:n]


def test_executing_polls(client: httpx.Client) -> None:
    set_faults(client, executing_polls=2)
    req = filtered(PROGRAM_2734, cacheBreaker="abc")
    assert invoke(client, req).json()["status"] == "EXECUTING"
    assert invoke(client, req).json()["status"] == "EXECUTING"
    assert invoke(client, req).json()["status"] == "COMPLETE"


def test_content_change(client: httpx.Client, sim: SimServer) -> None:
    f = _pick(sim, "PUBLIC", "2734", index=1)
    p = _params(f)
    before = client.get(DOWNLOAD, params=p)
    try:
        changed = client.post("/__sim/change", json={"uri": f.uri}).json()
        after = client.get(DOWNLOAD, params=p)
        assert after.headers["ETag"] == changed["etag"] != before.headers["ETag"]
        assert after.content != before.content
        assert len(after.content) == len(before.content)
        # A resumed read that names the old ETag gets the whole new body, not a mixed file.
        r = client.get(
            DOWNLOAD, params=p, headers={"Range": "bytes=10-19", "If-Range": before.headers["ETag"]}
        )
        assert r.status_code == 200 and r.content == after.content
        assert client.post("/__sim/change", json={"uri": "mast:nope"}).status_code == 404
    finally:
        client.post("/__sim/change", json={"uri": f.uri, "generation": f.generation})
    assert client.get(DOWNLOAD, params=p).headers["ETag"] == before.headers["ETag"]


# -- directory view ------------------------------------------------------------------------------


HREF = re.compile(r'<a href="([^"]+)">')


def test_directory_view(client: httpx.Client, public_file: Any, ea_file: Any) -> None:
    root = client.get("/files/")
    assert root.status_code == 200 and root.headers["Content-Type"].startswith("text/html")
    links = HREF.findall(root.text)
    assert f"{public_file.collection}/" in links
    assert client.get("/files").status_code == 301
    coll = client.get(f"/files/{public_file.collection}/")
    assert f"{quote(public_file.dataset)}/" in HREF.findall(coll.text)
    folder_path = f"/files/{public_file.collection}/{public_file.dataset}/"
    folder = client.get(folder_path)
    hrefs = HREF.findall(folder.text)
    assert quote(public_file.filename) in hrefs
    assert all(not h.startswith(("/", "http")) for h in hrefs)
    file_url = urljoin(folder_path, quote(public_file.filename))
    via_dir = client.get(file_url, headers={"Range": "bytes=5-14"})
    via_api = client.get(DOWNLOAD, params=_params(public_file), headers={"Range": "bytes=5-14"})
    assert via_dir.status_code == 206 and via_dir.content == via_api.content
    assert via_dir.headers["ETag"] == via_api.headers["ETag"]
    assert client.head(file_url).headers["Content-Length"] == str(public_file.size)
    ea_url = f"/files/{ea_file.collection}/{quote(ea_file.dataset)}/{quote(ea_file.filename)}"
    assert client.get(ea_url).status_code == 401
    assert (
        client.get(ea_url, headers={"Authorization": f"token {AUTHORIZED_TOKEN}"}).status_code
        == 200
    )
    assert client.get("/files/NOPE/x/").status_code == 404


def test_bundle_script_downloads(
    client: httpx.Client, sim: SimServer, public_file: Any, tmp_path: Path
) -> None:
    hostile = _file(sim, HOSTILE_URI)
    uris = [public_file.uri, HOSTILE_URI, "mast:nope"]
    r = client.post("/api/v0.1/Download/bundle.sh", data={"uri": uris})
    assert r.status_code == 200
    assert r.text.startswith("#!/bin/sh")
    assert "# not found: mast:nope" in r.text
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = tmp_path / "bundle.sh"
    script.write_text(r.text)
    env = {**os.environ, "DOWNLOAD_FOLDER": str(tmp_path / "dl")}
    env.pop("MAST_API_TOKEN", None)
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True, timeout=60)
    for f in (public_file, hostile):
        got = (tmp_path / "dl" / f.collection / f.dataset / f.filename).read_bytes()
        assert got == bytes(f.read(0, f.size))


def test_hostile_filename(client: httpx.Client, sim: SimServer) -> None:
    f = _file(sim, HOSTILE_URI)
    r = client.get(DOWNLOAD, params={"uri": HOSTILE_URI})
    assert r.status_code == 200 and r.content == bytes(f.read(0, f.size))
    assert r.headers["Content-Disposition"].endswith(quote(f.filename, safe=""))
    folder_path = f"/files/{f.collection}/{quote(f.dataset)}/"
    links = HREF.findall(client.get(folder_path).text)
    hrefs = [html.unescape(h) for h in links]
    assert quote(f.filename) in hrefs
    via_dir = client.get(urljoin(folder_path, quote(f.filename)))
    assert via_dir.status_code == 200 and via_dir.content == r.content


# -- CLI -----------------------------------------------------------------------------------------


def _sim_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_cli_prints_url_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mastfs.sim", "--port", "0", "--latency-ms", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_sim_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as c:
            assert c.get("/whoami").json()["anon"] is True
            assert c.get("/__sim/faults").json()["latency_ms"] == 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "mastfs.sim", "--port", str(port)],
            capture_output=True,
            text=True,
            env=_sim_env(),
            cwd=ROOT,
            timeout=60,
        )
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(port) in lines[0], r.stderr


def test_cli_bad_flags() -> None:
    for args in (["--port", "nope"], ["--frobnicate"], ["--error-rate", "3"]):
        r = subprocess.run(
            [sys.executable, "-m", "mastfs.sim", *args],
            capture_output=True,
            text=True,
            env=_sim_env(),
            cwd=ROOT,
            timeout=60,
        )
        assert r.returncode != 0, args
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], r.stderr
