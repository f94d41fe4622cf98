"""MAST's column vocabulary: the fields of observation and product rows, and columnsconfig.

`OBSERVATION_FIELDS` and `PRODUCT_FIELDS` give each field's MAST JSON type in the order MAST
returns them; `columns_config` answers the Portal's columnsconfig request from them.
"""

from __future__ import annotations

# (name, MAST JSON type), in the order MAST returns them (mast-api.md §3).
OBSERVATION_FIELDS: list[tuple[str, str]] = [
    ("intentType", "string"),
    ("obs_collection", "string"),
    ("provenance_name", "string"),
    ("instrument_name", "string"),
    ("project", "string"),
    ("filters", "string"),
    ("wavelength_region", "string"),
    ("target_name", "string"),
    ("target_classification", "string"),
    ("obs_id", "string"),
    ("s_ra", "float"),
    ("s_dec", "float"),
    ("dataproduct_type", "string"),
    ("proposal_pi", "string"),
    ("calib_level", "int"),
    ("t_min", "float"),
    ("t_max", "float"),
    ("t_exptime", "float"),
    ("em_min", "float"),
    ("em_max", "float"),
    ("obs_title", "string"),
    ("t_obs_release", "float"),
    ("proposal_id", "string"),
    ("proposal_type", "string"),
    ("sequence_number", "int"),
    ("s_region", "string"),
    ("jpegURL", "string"),
    ("dataURL", "string"),
    ("dataRights", "string"),
    ("mtFlag", "boolean"),
    ("srcDen", "float"),
    ("obsid", "string"),
    ("objID", "string"),
]

PRODUCT_FIELDS: list[tuple[str, str]] = [
    ("obsID", "string"),
    ("obs_collection", "string"),
    ("dataproduct_type", "string"),
    ("obs_id", "string"),
    ("description", "string"),
    ("type", "string"),
    ("dataURI", "string"),
    ("productType", "string"),
    ("productGroupDescription", "string"),
    ("productSubGroupDescription", "string"),
    ("productDocumentationURL", "string"),
    ("project", "string"),
    ("prvversion", "string"),
    ("proposal_id", "string"),
    ("productFilename", "string"),
    ("size", "int"),
    ("parent_obsid", "string"),
    ("dataRights", "string"),
    ("calib_level", "int"),
    ("filters", "string"),
]


def _info(text: str, desc: str, unit: str = "", vot: str = "") -> dict[str, object]:
    out: dict[str, object] = {"text": text, "vot.description": desc}
    if unit:
        out["vot.unit"] = unit
    if vot:
        out["vot.datatype"] = vot
    return out


_OBS_COLUMN_INFO: dict[str, dict[str, object]] = {
    "intentType": _info("Observation Type", "Whether observation is for science or calibration"),
    "obs_collection": {**_info("Mission", "Collection"), "separator": ";"},
    "provenance_name": _info("Provenance Name", "Provenance name, or source of data"),
    "instrument_name": {**_info("Instrument", "Instrument name"), "separator": ";"},
    "project": _info("Project", "Processing project"),
    "filters": {**_info("Filters", "Instrument filters"), "separator": ";"},
    "wavelength_region": {**_info("Waveband", "Energy band"), "separator": ";"},
    "target_name": _info("Target Name", "Target name designated by observer"),
    "target_classification": _info("Target Classification", "Type of target"),
    "obs_id": _info("Observation ID", "Observation identifier, given by mission"),
    "s_ra": _info("RA", "Observation Right Ascension", "deg"),
    "s_dec": _info("Dec", "Observation Declination", "deg"),
    "dataproduct_type": _info("Product Type", "Type of product"),
    "proposal_pi": _info("Principal Investigator", "Principal investigator's last name"),
    "calib_level": _info("Calib. Level", "Calibration level"),
    "t_min": _info("Start Time", "Observation start datetime", "MJD"),
    "t_max": _info("End Time", "Observation end datetime", "MJD"),
    "t_exptime": _info("Exposure Length", "Exposure time", "sec"),
    "em_min": _info("Min. Wavelength", "Minimum wavelength", "nm"),
    "em_max": _info("Max. Wavelength", "Maximum wavelength", "nm"),
    "obs_title": _info("Observation Title", "Observation description from proposal"),
    "t_obs_release": _info("Release Date", "Dataset release date", "MJD"),
    "proposal_id": _info("Proposal ID", "Proposal ID"),
    "proposal_type": _info("Proposal Type", "Type of telescope proposal"),
    "sequence_number": _info("Sequence Number", "Sequence number, e.g. Kepler quarter"),
    "s_region": _info("s_region", "STC/S Footprint"),
    "jpegURL": _info("jpegURL", "Preview Image URL"),
    "dataURL": _info("Data URL", "Data URL"),
    "dataRights": _info("Data Rights", "Data Rights"),
    "mtFlag": _info("Moving Target", "Moving Target Flag"),
    "srcDen": _info("Number of Catalog Objects", "Number of cataloged objects in footprint"),
    "obsid": _info("Product Group ID", "Product Group ID", vot="long"),
    "objID": _info("Object ID", "Plane ID of observation at given calibration level"),
}

_PRODUCT_COLUMN_INFO: dict[str, dict[str, object]] = {
    "obsID": _info("Product Group ID", "Product Group ID", vot="long"),
    "obs_collection": {**_info("Mission", "Collection"), "separator": ";"},
    "dataproduct_type": _info("Product Type", "Type of product"),
    "obs_id": _info("Observation ID", "Observation identifier, given by mission"),
    "description": _info("Description", "Product description"),
    "type": _info("Type", "S = simple product, D = derived product"),
    "dataURI": _info("Data URI", "Data URI"),
    "productType": {**_info("Product Category", "Product category"), "separator": ";"},
    "productGroupDescription": _info("Group", "Product group"),
    "productSubGroupDescription": _info("Subgroup", "Product subgroup"),
    "productDocumentationURL": _info("Doc URL", "Product documentation URL"),
    "project": _info("Project", "Processing project"),
    "prvversion": _info("Version", "Provenance version"),
    "proposal_id": _info("Proposal ID", "Proposal ID"),
    "productFilename": _info("Filename", "Product filename"),
    "size": _info("Size", "Product size", "bytes"),
    "parent_obsid": _info(
        "Parent Product Group ID", "Product group ID of the queried observation", vot="long"
    ),
    "dataRights": _info("Data Rights", "Data Rights"),
    "calib_level": _info("Calib. Level", "Calibration level"),
    "filters": {**_info("Filters", "Instrument filters"), "separator": ";"},
}

_VOT = {"string": "char", "float": "double", "int": "int", "boolean": "boolean"}


def _columns_config(
    fields: list[tuple[str, str]], info: dict[str, dict[str, object]]
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, mast_type in fields:
        entry: dict[str, object] = {"vot.datatype": _VOT[mast_type], **info[name]}
        entry.setdefault("vot.unit", "")
        if mast_type == "float":
            entry["treatNumeric"] = True
        out[name] = entry
    return out


def columns_config(col_config_id: str) -> dict[str, dict[str, object]]:
    """A MAST-like columnsconfig answer; an empty dict for an unknown configuration."""
    if col_config_id in ("Mast.Caom.Cone", "Mast.Caom.Filtered", "Mast.Caom.Filtered.Position"):
        return _columns_config(OBSERVATION_FIELDS, _OBS_COLUMN_INFO)
    if col_config_id == "Mast.Caom.Products":
        return _columns_config(PRODUCT_FIELDS, _PRODUCT_COLUMN_INFO)
    return {}
