"""Queries as MAST wants them (issue 14, part 2), against the simulator under both profiles:
product lists in small batches, a few in flight, each retried on its own; a failed batch named,
never hidden behind the cached result; `--target` through the resolver, the archive's lookup
as the fallback; TESS full-frame images left out as astroquery leaves them out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mastfs import product_lists
from mastfs.archive import Query
from mastfs.session import Session, SessionError
from mastfs.sim import ffi, hla
from mastfs.sim.catalog import AUTHORIZED_TOKEN
from tests.support.session import Recorder, run_session
from tests.support.sim import Sim

PRODUCTS = "Mast.Caom.Products"


@pytest.fixture(autouse=True)
def _quick_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pauses between a batch's attempts of milliseconds, not seconds."""
    monkeypatch.setattr(product_lists, "FIRST_PAUSE", 0.01)
    monkeypatch.setattr(product_lists, "MAX_PAUSE", 0.02)


def _expected(sim: Sim, program: str) -> list[tuple[str, str]]:
    """(parent_obsid, dataURI) of every product row of `program`, in obsid order."""
    rows = [o for o in sim.server.catalog.observations if str(o["proposal_id"]) == program]
    out = []
    for o in sorted(rows, key=lambda o: int(str(o["obsid"]))):
        out += [(str(r["parent_obsid"]), str(r["dataURI"])) for r in
                sim.server.catalog.products_for(str(o["obsid"]))]  # fmt: skip
    return out


def _got(s: Session) -> list[tuple[str, str]]:
    return [(p.parent_obsid, p.dataURI) for p in s.result.products]


def _services(sim: Sim) -> dict[str, int]:
    return dict(sim.http.get("/__sim/stats").json()["services"])


def _run(sim: Sim, tmp_path: Path, query: Query, **kw: Any) -> tuple[Session, Recorder]:
    return run_session(sim.url, tmp_path, query, **kw)


def test_product_lists_in_batches(sim: Sim, tmp_path: Path, profile: str) -> None:
    s, reporter = _run(sim, tmp_path, Query(programs=("2734",)))
    assert _got(s) == _expected(sim, "2734")
    # 12 observations: batches of 5, 5 and 2; no columns configuration asked for product lists.
    assert _services(sim)[PRODUCTS] == 3
    assert "product lists: 3/3 (12/12 observations, 308 product rows)" in reporter.progress_lines
    assert not reporter.warnings


def test_reset_batches_are_split_and_retried(sim: Sim, tmp_path: Path, profile: str) -> None:
    sim.profile(profile, products_max_obs=2)
    s, _ = _run(sim, tmp_path, Query(programs=("2734",)))
    assert _got(s) == _expected(sim, "2734")
    services = _services(sim)
    assert services[PRODUCTS + " (reset)"] >= 3


def test_503_bursts_are_waited_out(sim: Sim, tmp_path: Path, profile: str) -> None:
    # Every second request answered 503 with Retry-After: 0 — the observation query's, the
    # login's and the product lists' alike: each is asked again.
    sim.profile(profile, burst_every=2, burst_length=1, retry_after=0)
    s, _ = _run(sim, tmp_path, Query(programs=("1558",)), token=AUTHORIZED_TOKEN)
    assert _got(s) == _expected(sim, "1558") and s.user is not None
    assert not s.result.from_cache
    assert sim.http.get("/__sim/faults").json()["faults_injected"] >= 4


def test_a_failed_batch_is_named_not_hidden_by_the_cache(sim: Sim, tmp_path: Path) -> None:
    s, _ = _run(sim, tmp_path, Query(programs=("2734",)))
    assert not s.result.from_cache
    sim.profile("mast", products_max_obs=0)  # every product list reset, however small
    with pytest.raises(SessionError) as failed:
        _run(sim, tmp_path, Query(programs=("2734",)))
    message = str(failed.value)
    assert message.startswith(f"the archive at {sim.url} failed the product list of batch ")
    assert re.search(r"of batch \d+/\d+ \(observations? \d+", message), message
    assert "closed the connection" in message and "cached" not in message


def test_target_through_the_resolver(sim: Sim, tmp_path: Path, profile: str) -> None:
    resolver = sim.urls()["resolver_url"] + "/Santa-war/query"
    s, reporter = _run(sim, tmp_path, Query(target="M1", radius_deg=0.05), resolver=resolver)
    endpoints = sim.http.get("/__sim/stats").json()["endpoints"]
    assert endpoints["santa"] == 1 and "Mast.Name.Lookup" not in _services(sim)
    assert {p.obs_collection for p in s.result.products} == {"HLA"}
    assert len(s.result.products) == len(_expected(sim, hla.PROPOSAL))
    ffis = 3 if profile == "mast" else 0
    left_out = [w for w in reporter.warnings if "full-frame-image" in w]
    assert len(left_out) == (1 if ffis else 0)
    if ffis:
        assert left_out[0].startswith(f"left out {ffis} TESS/TICA full-frame-image observations")
        # Their enormous product lists were never asked for.
        asked = sim.http.get("/__sim/stats").json()["services"][PRODUCTS]
        assert asked == 1 and s.result.observations == len(_expected_obs(sim, hla.PROPOSAL))


def _expected_obs(sim: Sim, program: str) -> list[Any]:
    return [o for o in sim.server.catalog.observations if str(o["proposal_id"]) == program]


def test_target_falls_back_to_the_archive(sim: Sim, tmp_path: Path) -> None:
    broken = sim.urls()["files_url"] + "/no-resolver-here"
    s, reporter = _run(sim, tmp_path, Query(target="M1", radius_deg=0.05), resolver=broken)
    assert _services(sim)["Mast.Name.Lookup"] == 1
    assert {p.obs_collection for p in s.result.products} == {"HLA"}
    assert any(
        w.startswith(f"the resolver at {broken} answered HTTP 404; resolved by the archive")
        for w in reporter.warnings
    ), reporter.warnings
    with pytest.raises(SessionError, match="could not resolve target name 'NoSuchThing'"):
        _run(sim, tmp_path, Query(target="NoSuchThing"), resolver=broken)


def test_ffi_targets_match_astroquery() -> None:
    from mastfs.archive import FFI_TARGETS

    assert {ffi.TESS_FFI, ffi.TICA_FFI} == FFI_TARGETS


def test_observation_filters_are_astroquery_s(sim: Sim) -> None:
    from astroquery.mast.discovery_portal import PortalAPI

    from mastfs import mashup

    config = sim.server.catalog.columns_config("Mast.Caom.Cone")
    criteria: dict[str, Any] = {
        "proposal_id": ["2734", "1558"],
        "instrument_name": ["MIRI*"],
        "t_exptime": [100.0, 500.0],
        "filters": ["F770W"],
    }
    portal = PortalAPI()
    portal._column_configs["Mast.Caom.Filtered"] = config
    theirs = portal.build_filter_set("Mast.Caom.Cone", "Mast.Caom.Filtered", **criteria)
    assert mashup.observation_filters(config, criteria) == theirs
    with pytest.raises(mashup.BadCriterion, match=r"'proposal_idd' does not exist\. Did you mean"):
        mashup.observation_filters(config, {"proposal_idd": "2734"})
