"""TESS and TICA full-frame-image observations: what a cone search near anything also finds.

Real cone searches pull in the TESS full-frame images (FFIs) of every sector that covered the
position, each with an enormous product list (one calibrated image per 10 or 30 minutes and
camera CCD). astroquery 0.4.11 leaves out of product requests the observations whose
`target_name` is `TESS FFI` or `TICA FFI` (`ObservationsClass._filter_ffi_observations`).

With the `tess_ffi` knob on, every cone and position search of the simulator also returns these
rows, centred on the position asked for, and `Mast.Caom.Products` lists `FFI_PRODUCTS` rows
for each. Their files are never served (404): a client that asks for them has already failed.
"""

from __future__ import annotations

from typing import Any

TESS_FFI = "TESS FFI"
TICA_FFI = "TICA FFI"
FFI_PRODUCTS = 20_000

# (obsid, target_name, obs_collection, provenance, obs_id, sector, t_min MJD)
_FFIS = (
    ("71000000001", TESS_FFI, "TESS", "SPOC", "tess-s0029-1-2", 29, 59087.3),
    ("71000000002", TESS_FFI, "TESS", "SPOC", "tess-s0069-1-2", 69, 60117.9),
    ("71000000003", TICA_FFI, "HLSP", "TICA", "hlsp_tica_tess_ffi_s0069-o1-cam1-ccd2", 69, 60117.9),
)
_BY_OBSID = {f[0]: f for f in _FFIS}


def is_ffi(obsid: str) -> bool:
    return obsid in _BY_OBSID


def observations(ra: float, dec: float) -> list[dict[str, Any]]:
    """The FFI observation rows a cone search at (ra, dec) finds, all at its centre."""
    half = 6.0  # a TESS camera CCD spans about 12 degrees
    rows = []
    for obsid, target, collection, provenance, obs_id, sector, t_min in _FFIS:
        region = "POLYGON ICRS " + " ".join(
            f"{(ra + a) % 360:.6f} {max(-90.0, min(90.0, dec + d)):.6f}"
            for a, d in ((-half, -half), (half, -half), (half, half), (-half, half))
        )
        rows.append(
            {
                "intentType": "science",
                "obs_collection": collection,
                "provenance_name": provenance,
                "instrument_name": "Photometer",
                "project": "TESS",
                "filters": "TESS",
                "wavelength_region": "Optical",
                "target_name": target,
                "target_classification": "",
                "obs_id": obs_id,
                "s_ra": round(ra % 360.0, 7),
                "s_dec": round(dec, 7),
                "dataproduct_type": "image",
                "proposal_pi": "Ricker, George",
                "calib_level": 2 if collection == "TESS" else 4,
                "t_min": t_min,
                "t_max": round(t_min + 27.0, 6),
                "t_exptime": 200.0 if sector > 55 else 600.0,
                "em_min": 600.0,
                "em_max": 1000.0,
                "obs_title": "",
                "t_obs_release": round(t_min + 40.0, 6),
                "proposal_id": "N/A",
                "proposal_type": "",
                "sequence_number": sector,
                "s_region": region,
                "jpegURL": None,
                "dataURL": None,
                "dataRights": "PUBLIC",
                "mtFlag": False,
                "srcDen": None,
                "obsid": obsid,
                "objID": str(int(obsid) + 1_000_000_000),
            }
        )
    return rows


def products(obsid: str) -> list[dict[str, Any]]:
    """The FFI observation's product rows: one calibrated image per cadence ([] if not an FFI)."""
    found = _BY_OBSID.get(obsid)
    if found is None:
        return []
    _, target, collection, _, obs_id, sector, _ = found
    mission = "TESS" if collection == "TESS" else "HLSP"
    rows = []
    for i in range(FFI_PRODUCTS):
        name = f"tess2023{170 + i // 4320:03d}{i % 4320:06d}-s{sector:04d}-1-2-0265-s_ffic.fits"
        rows.append(
            {
                "obsID": obsid,
                "obs_collection": collection,
                "dataproduct_type": "image",
                "obs_id": obs_id,
                "description": "full frame image",
                "type": "S",
                "dataURI": f"mast:{mission}/product/{name}",
                "productType": "SCIENCE",
                "productGroupDescription": None,
                "productSubGroupDescription": "FFIC",
                "productDocumentationURL": None,
                "project": "TESS" if target == TESS_FFI else "TICA",
                "prvversion": "5.0",
                "proposal_id": "N/A",
                "productFilename": name,
                "size": 34_554_240,
                "parent_obsid": obsid,
                "dataRights": "PUBLIC",
                "calib_level": 2,
                "filters": "TESS",
            }
        )
    return rows
