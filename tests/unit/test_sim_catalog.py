"""The simulator's catalog: fields, programs, shared products, sizes, access, determinism."""

from __future__ import annotations

import collections
import json
import re

import pytest

from mastfs.sim import catalog as C
from mastfs.sim.catalog import (
    AUTHORIZED_TOKEN,
    BIG_4G_URI,
    HOSTILE_URI,
    OBSERVATION_FIELDS,
    ONE_GIB_URI,
    PARALLEL_URIS,
    PRODUCT_FIELDS,
    TOKENS,
    UNAUTHORIZED_TOKEN,
    Catalog,
    default_catalog,
)

GIB = 1 << 30
_PY_TYPES = {"string": (str,), "float": (float, int), "int": (int,), "boolean": (bool,)}


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return default_catalog()


def _obs(cat: Catalog, proposal: str, level: int | None = None) -> list[dict[str, object]]:
    return [
        o
        for o in cat.observations
        if o["proposal_id"] == proposal and (level is None or o["calib_level"] == level)
    ]


def _small_program_rows(cat: Catalog) -> list[dict[str, object]]:
    rows = []
    for o in cat.observations:
        if o["proposal_id"] != "1999":
            rows += cat.products_for(str(o["obsid"]))
    return rows


def _check_types(row: dict[str, object], fields: list[tuple[str, str]]) -> None:
    assert list(row) == [name for name, _ in fields]
    for name, mast_type in fields:
        value = row[name]
        if value is None:
            continue
        assert isinstance(value, _PY_TYPES[mast_type]), (name, value)
        if mast_type in ("int", "float"):
            assert not isinstance(value, bool), name


def test_field_lists_match_mast_order() -> None:
    assert [n for n, _ in PRODUCT_FIELDS] == [
        "obsID", "obs_collection", "dataproduct_type", "obs_id", "description", "type",
        "dataURI", "productType", "productGroupDescription", "productSubGroupDescription",
        "productDocumentationURL", "project", "prvversion", "proposal_id", "productFilename",
        "size", "parent_obsid", "dataRights", "calib_level", "filters",
    ]  # fmt: skip
    names = [n for n, _ in OBSERVATION_FIELDS]
    assert names[0] == "intentType" and names[-2:] == ["obsid", "objID"]
    assert len(names) == len(set(names)) == 33
    assert dict(OBSERVATION_FIELDS)["obsid"] == "string"
    assert dict(OBSERVATION_FIELDS)["calib_level"] == "int"


def test_observation_rows_complete_and_typed(cat: Catalog) -> None:
    for row in cat.observations:
        _check_types(row, OBSERVATION_FIELDS)
        for name in ("obs_id", "obsid", "target_name", "instrument_name", "proposal_id",
                     "obs_collection", "dataRights", "s_region", "filters"):  # fmt: skip
            assert row[name], (name, row["obs_id"])
        assert str(row["obsid"]).isdigit()
        assert row["t_min"] <= row["t_max"]  # type: ignore[operator]
        assert str(row["s_region"]).startswith("POLYGON ")
    obsids = [o["obsid"] for o in cat.observations]
    assert len(obsids) == len(set(obsids))
    json.dumps(cat.observations)  # JSON-ready values


def test_product_rows_complete_and_typed(cat: Catalog) -> None:
    rows = _small_program_rows(cat)
    rows += cat.products_for(str(_obs(cat, "1999", 3)[0]["obsid"]))
    assert len(rows) > 1000
    for row in rows:
        _check_types(row, PRODUCT_FIELDS)
        for name in ("obsID", "obs_id", "dataURI", "productFilename", "productType", "type",
                     "productSubGroupDescription", "project", "prvversion", "proposal_id",
                     "parent_obsid", "dataRights", "description", "filters"):  # fmt: skip
            assert row[name], (name, row["dataURI"])
        assert row["productGroupDescription"] in (None, C.MRP)
        # `/url/` products (HLA) name their file in the query of a generated URL.
        uri, name = str(row["dataURI"]), str(row["productFilename"])
        assert uri.endswith(("/" + name, "&filename=" + name)), uri
        f = cat.file(str(row["dataURI"]))
        assert f is not None and f.size == row["size"] and f.filename == row["productFilename"]
    json.dumps(rows)


def test_product_vocabulary(cat: Catalog) -> None:
    rows = _small_program_rows(cat)
    types = collections.Counter(r["productType"] for r in rows)
    assert set(types) == {"SCIENCE", "AUXILIARY", "INFO", "PREVIEW", "CATALOG"}
    for r in rows:
        name = str(r["productFilename"])
        sub = str(r["productSubGroupDescription"])
        level = r["calib_level"]
        if r["obs_collection"] == "JWST":
            assert r["type"] == "D" and r["project"] == "CALJWST"
            assert re.fullmatch(r"\d+\.\d+\.\d+", str(r["prvversion"]))
        else:
            assert r["type"] == "S" and r["project"] == r["obs_collection"] in ("HST", "HLA")
        if "_gs-" in name:
            assert r["productType"] == "AUXILIARY" and sub.startswith("GS-")
            assert r["productGroupDescription"] is None
        elif r["productType"] != "AUXILIARY" or r["obs_collection"] == "JWST":
            # The subgroup is the upper-case suffix, also for previews of a product.
            assert f"_{sub.lower()}" in name, (sub, name)
        if name.endswith("_uncal.fits"):
            assert level == 1
        if name.endswith(("_rate.fits", "_rateints.fits", "_cal.fits")):
            assert level == 2
        if name.endswith((".jpg", ".png")):
            assert r["productType"] == "PREVIEW" and r["productGroupDescription"] is None
        if name.endswith("_cat.ecsv"):
            assert r["productType"] == "CATALOG"
        if name.endswith(("_asn.json", "_pool.csv")):
            assert r["productType"] == "INFO"


def test_seed_names_exist(cat: Catalog) -> None:
    names = {f.filename for f in cat.files()}
    for name in (
        "jw02734001001_02101_00001-seg001_nis_uncal.fits",
        "jw02734001001_02101_00001-seg001_nis_rate.fits",
        "jw02734001001_02101_00001-seg001_nis_rateints.fits",
        "jw02734001001_02101_00001-seg001_nis_cal.fits",
        "jw02734-o002_t002_niriss_clear-gr700xd-substrip256_x1dints.fits",
        "jw02734-o002_20220630t163421_tso3_001_asn.json",
        "jw02734_20220630t163421_pool.csv",
        "jw01558-o001_t001_miri_f1000w_i2d.fits",
        "jw01558-o001_t001_miri_f560w_cat.ecsv",
        "jw01558-o001_t001_miri_f770w_segm.fits",
        "j9l960010_drz.fits",
        "j9l960a7q_flc.fits",
        "j9l960010_log.txt",
    ):
        assert name in names, name
    gs = [n for n in names if n.startswith("jw02734002001_gs-")]
    assert {n.split("_")[1] for n in gs} >= {"gs-fg", "gs-acq1", "gs-track"}
    assert any(n.endswith("_stream.fits") for n in gs)
    obs_ids = {o["obs_id"] for o in cat.observations}
    assert "jw02734-o002_t002_niriss_clear-gr700xd-substrip256" in obs_ids
    assert "jw02734001001_02101_00001-seg001_nis" in obs_ids


def test_jwst_names_follow_conventions(cat: Catalog) -> None:
    exposure = re.compile(r"jw\d{11}_\d{5}_\d{5}(-seg\d{3})?_[a-z0-9]+_[a-z0-9_]+\.(fits|jpg|png)")
    level3 = re.compile(
        r"jw\d{5}-o\d{3}_[ts]\d{3,5}_[a-z]+_[a-z0-9-]+_[a-z0-9_]+\.(fits|ecsv|jpg|png)"
    )
    asn = re.compile(r"jw\d{5}-o\d{3}_\d{8}t\d{6}_[a-z0-9-]+_\d{3,5}_asn\.json")
    pool = re.compile(r"jw\d{5}_\d{8}t\d{6}_pool\.csv")
    gs = re.compile(r"jw\d{11}_gs-(acq1|acq2|track|fg|id)_\d{13}_(cal|uncal|stream)\.fits")
    msa = re.compile(r"jw\d{11}_\d{2}_msa\.fits")
    for f in cat.files():
        if f.collection == "JWST":
            assert any(p.fullmatch(f.filename) for p in (exposure, level3, asn, pool, gs, msa)), (
                f.filename
            )
    for o in _obs(cat, "2734", 3) + _obs(cat, "1558", 3) + _obs(cat, "6543", 3):
        assert re.fullmatch(r"jw\d{5}-o\d{3}_t\d{3}_[a-z]+_[a-z0-9-]+", str(o["obs_id"]))


def test_instruments_and_targets(cat: Catalog) -> None:
    def values(proposal: str, field: str) -> set[object]:
        return {o[field] for o in _obs(cat, proposal)}

    assert values("2734", "instrument_name") == {"NIRISS/SOSS"}
    assert values("2734", "target_name") == {"WASP-96"}
    assert values("1558", "instrument_name") == {"MIRI/IMAGE"}
    assert values("1558", "target_name") == {"NGC-6720"}
    assert values("10775", "instrument_name") == {"ACS/WFC"}
    assert values("6543", "instrument_name") == {"NIRCAM/IMAGE"}
    assert values("1999", "instrument_name") == {"NIRSPEC/MSA"}
    assert {"F560W", "F770W", "F1000W", "F2550W"} <= values("1558", "filters")
    assert values("2734", "calib_level") == {2, 3}
    assert values("10775", "obs_collection") == {"HST"}


def test_large_program_scale(cat: Catalog) -> None:
    assert len(_obs(cat, "1999")) >= 500
    assert sum(1 for f in cat.files() if f.proposal_id == "1999") >= 10_000


def test_shared_products_appear_under_several_datasets(cat: Catalog) -> None:
    rows = _small_program_rows(cat)
    folders: dict[str, set[str]] = collections.defaultdict(set)
    for r in rows:
        folders[str(r["dataURI"])].add(str(r["obs_id"]))
    shared = {uri for uri, ids in folders.items() if len(ids) > 1}
    pool = "mast:JWST/product/jw02734_20220630t163421_pool.csv"
    assert pool in shared
    assert any("_gs-fg_" in u for u in shared)
    assert "mast:HST/product/j9l960010_asn.fits" in shared
    # A shared file is one SimFile, owned by one dataset folder.
    assert cat.file(pool) is not None and cat.file(pool).dataset in folders[pool]  # type: ignore[union-attr]


def test_level3_lists_member_products(cat: Catalog) -> None:
    l3 = next(o for o in _obs(cat, "2734", 3) if "o002" in str(o["obs_id"]))
    rows = cat.products_for(str(l3["obsid"]))
    parents = {r["parent_obsid"] for r in rows}
    assert parents == {l3["obsid"]}
    own = [r for r in rows if r["obsID"] == l3["obsid"]]
    members = [r for r in rows if r["obsID"] != l3["obsid"]]
    assert {r["obs_id"] for r in own} == {l3["obs_id"]}
    assert any(str(r["productFilename"]).endswith("_x1dints.fits") for r in own)
    member_ids = {r["obs_id"] for r in members}
    assert "jw02734002001_03101_00001-seg001_nis" in member_ids
    for r in members:
        assert cat.observation(str(r["obsID"]))["obs_id"] == r["obs_id"]  # type: ignore[index]
    # MRP is relative to the requested observation: only its own rows carry it.
    assert {r["productGroupDescription"] for r in members} == {None}
    mrp = {str(r["productFilename"]) for r in own if r["productGroupDescription"] == C.MRP}
    assert any(n.endswith("_x1dints.fits") for n in mrp)
    assert any(n.endswith("_asn.json") for n in mrp) and any(n.endswith("_pool.csv") for n in mrp)
    # The same exposure queried directly: its own rows, with its calibrated products as MRP.
    exp = cat.observation(str(members[0]["obsID"]))
    assert exp is not None
    direct = cat.products_for(str(exp["obsid"]))
    assert {r["parent_obsid"] for r in direct} == {exp["obsid"]}
    assert any(r["productGroupDescription"] == C.MRP for r in direct)
    assert cat.products_for("123") == []


def test_every_observation_has_products_and_mrp(cat: Catalog) -> None:
    for o in cat.observations:
        if (
            o["proposal_id"] == "1999"
            and o["calib_level"] == 3
            and str(o["obs_id"])[-20:] > "s00010"
        ):
            continue  # sampled: the large program's sources are alike
        rows = cat.products_for(str(o["obsid"]))
        assert rows, o["obs_id"]
        assert any(r["productGroupDescription"] == C.MRP for r in rows), o["obs_id"]


def test_notable_sizes(cat: Catalog) -> None:
    big = cat.file(BIG_4G_URI)
    assert big is not None and big.size >= 4 * GIB
    one = cat.file(ONE_GIB_URI)
    assert one is not None and one.size == GIB
    assert len(set(PARALLEL_URIS)) == 8
    for uri in PARALLEL_URIS:
        f = cat.file(uri)
        assert f is not None and f.size == GIB
    sizes = sorted(f.size for f in cat.files())
    assert sum(1 for s in sizes if s >= 512 << 20) >= 8
    assert sum(1 for s in sizes if s == GIB) >= 8
    assert sizes[0] < 2000


def test_exclusive_access_program(cat: Catalog) -> None:
    files = [f for f in cat.files() if f.proposal_id == "6543"]
    rights = collections.Counter(f.dataRights for f in files)
    assert rights[C.EXCLUSIVE_ACCESS] > rights[C.PUBLIC] > 0
    for f in files:
        if f.dataRights == C.PUBLIC:
            assert f.filename.endswith(("_asn.json", "_pool.csv"))
    assert {o["dataRights"] for o in _obs(cat, "6543")} == {C.EXCLUSIVE_ACCESS}
    assert all(f.dataRights == C.PUBLIC for f in cat.files() if f.proposal_id != "6543")


def test_tokens() -> None:
    assert TOKENS[AUTHORIZED_TOKEN].display_name == "Ada Authorized"
    assert TOKENS[AUTHORIZED_TOKEN].proposals == frozenset({"6543"})
    assert TOKENS[UNAUTHORIZED_TOKEN].display_name == "Una Unauthorized"
    assert TOKENS[UNAUTHORIZED_TOKEN].proposals == frozenset()
    assert AUTHORIZED_TOKEN == "mastsim-authorized-6543"


def test_hostile_filename(cat: Catalog) -> None:
    f = cat.file(HOSTILE_URI)
    assert f is not None
    assert all(ch in f.filename for ch in ',"<>&') and "/" not in f.filename
    rows = [r for r in _small_program_rows(cat) if r["dataURI"] == HOSTILE_URI]
    assert rows and rows[0]["productFilename"] == f.filename


def test_resolve_matches_observations(cat: Catalog) -> None:
    for name, proposal in (("WASP-96", "2734"), ("ngc 6720", "1558"), ("M57", "1558"),
                           ("Ring Nebula", "1558"), ("47 Tuc", "10775"), ("NGC 104", "10775"),
                           ("GOODS-S", "1999"), ("Abell 2744", "6543")):  # fmt: skip
        hit = cat.resolve(name)
        assert hit is not None, name
        ra, dec, canonical = hit
        assert canonical
        obs = _obs(cat, proposal)
        assert min(abs(float(o["s_ra"]) - ra) + abs(float(o["s_dec"]) - dec) for o in obs) < 0.2  # type: ignore[arg-type]
    assert cat.resolve("no such object") is None


def test_columns_config_drives_astroquery(cat: Catalog) -> None:
    from astroquery.mast.discovery_portal import PortalAPI

    cone = cat.columns_config("Mast.Caom.Cone")
    products = cat.columns_config("Mast.Caom.Products")
    assert list(cone) == [n for n, _ in OBSERVATION_FIELDS]
    assert list(products) == [n for n, _ in PRODUCT_FIELDS]
    for config in (cone, products):
        for entry in config.values():
            assert {"text", "vot.datatype", "vot.description"} <= set(entry)
    assert cat.columns_config("Mast.Nope") == {}

    portal = PortalAPI()
    # An instance copy of the configs: no HTTP, no global state.
    portal._column_configs = {"Mast.Caom.Cone": cone, "Mast.Caom.Filtered": cone}
    filters = portal.build_filter_set(
        "Mast.Caom.Cone",
        "Mast.Caom.Filtered",
        obs_collection="JWST",
        proposal_id="2734",
        calib_level=[2, 3],
        t_min=[59000, 60000],
        instrument_name="NIRISS*",
    )
    by_name = {f["paramName"]: f for f in filters}
    assert by_name["obs_collection"] == {"paramName": "obs_collection", "separator": ";",
                                         "values": ["JWST"]}  # fmt: skip
    assert by_name["proposal_id"] == {"paramName": "proposal_id", "values": ["2734"]}
    assert by_name["calib_level"]["values"] == ["2", "3"]
    assert by_name["t_min"]["values"] == [{"min": 59000, "max": 60000}]
    assert by_name["instrument_name"]["freeText"] == "NIRISS%"


def test_determinism() -> None:
    a, b = Catalog(), Catalog()
    assert a.observations == b.observations
    assert [(f.uri, f.size, f.etag, f.last_modified, f.dataset) for f in a.files()] == [
        (f.uri, f.size, f.etag, f.last_modified, f.dataset) for f in b.files()
    ]
    some = [str(o["obsid"]) for o in a.observations[::97]]
    assert [a.products_for(o) for o in some] == [b.products_for(o) for o in some]
    assert default_catalog() is default_catalog()
