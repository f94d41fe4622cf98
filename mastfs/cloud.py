"""Pure: where a MAST product lives in the cloud copy of the archive (AWS bucket `stpubdata`).

Mapped as astroquery maps it (`astroquery.mast.utils.mast_relative_path`): the archive's
`path_lookup` service names each product's path (`/jwst/public/jw02734/...`), which becomes the
bucket key after astroquery's remappings (a leading `/` dropped; GALEX under `/mast/`, PS1 and
high-level science products moved). Only the missions astroquery's `CloudAccess` supports are
asked for, and public products only: the bucket holds nothing else. Keys come from the
archive, so each is checked before it is put in a URL.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence

DEFAULT_BUCKET_URL = "https://stpubdata.s3.amazonaws.com"
PATH_LOOKUP = "/api/v0.1/path_lookup/"
# URIs per path_lookup request: astroquery's chunk, below the archive's 414 limit.
LOOKUP_CHUNK = 50
# A path_lookup answer larger than this is refused (50 paths take a few KiB).
MAX_LOOKUP_BYTES = 1 << 20
# astroquery's `CloudAccess.supported_missions`, compared in lower case.
SUPPORTED = (
    "mast:hst/product",
    "mast:tess/product",
    "mast:kepler",
    "mast:galex",
    "mast:ps1",
    "mast:jwst/product",
)


class CloudPathError(ValueError):
    """The archive's path_lookup answer cannot be used."""


def in_cloud_mission(dataURI: str) -> bool:
    """Whether the cloud copy may hold the product (its mission is there)."""
    return dataURI.lower().startswith(SUPPORTED)


def lookup_url(server: str, dataURIs: Sequence[str]) -> str:
    """The archive's `path_lookup` URL for up to `LOOKUP_CHUNK` products."""
    if not 0 < len(dataURIs) <= LOOKUP_CHUNK:
        raise ValueError(f"{len(dataURIs)} URIs: path_lookup takes 1 to {LOOKUP_CHUNK}")
    query = urllib.parse.urlencode([("uri", uri) for uri in dataURIs])
    return f"{server.rstrip('/')}{PATH_LOOKUP}?{query}"


def key_for_path(path: str) -> str:
    """The bucket key of an archive path, as astroquery derives it.

    astroquery writes `path.lstrip("/mast/")` for GALEX, which strips characters rather than
    a prefix; the prefix is what it means, and what is done here.
    """
    if "galex" in path:
        key = path.removeprefix("/mast/").lstrip("/")
    elif "/ps1/" in path:
        key = path.replace("/ps1/", "panstarrs/ps1/public/").lstrip("/")
    elif "hlsp" in path:
        key = path.replace("/hlsp_local/public/", "mast/").lstrip("/")
    else:
        key = path.lstrip("/")
    return check_key(key)


def check_key(key: str) -> str:
    """`key` if it is a plain relative object key; `CloudPathError` otherwise."""
    parts = key.split("/")
    if (
        not key
        or len(key) > 1024
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 0x20 or c in "\x7f\\?#" for c in key)
    ):
        raise CloudPathError(f"unusable cloud key {key!r}")
    return key


def parse_lookup(body: bytes, dataURIs: Sequence[str]) -> dict[str, str | None]:
    """Each asked product's bucket key from a path_lookup answer, None where it has none.

    The answer is `{uri: {"status_code": 200, "path": "/jwst/public/..."}}` (404 and a null
    path for an unknown product). A product missing from the answer, or with an unusable
    path, has no key; an answer that is not such an object raises `CloudPathError`.
    """
    if len(body) > MAX_LOOKUP_BYTES:
        raise CloudPathError(f"path_lookup answer of {len(body)} bytes refused")
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CloudPathError(f"path_lookup answer is not JSON: {exc}") from exc
    if not isinstance(answer, dict):
        raise CloudPathError("path_lookup answer is not a JSON object")
    keys: dict[str, str | None] = {}
    for uri in dataURIs:
        entry = answer.get(uri)
        path = entry.get("path") if isinstance(entry, dict) else None
        key = None
        if isinstance(path, str):
            try:
                key = key_for_path(path)
            except CloudPathError:
                key = None
        keys[uri] = key
    return keys


def object_url(bucket_url: str, key: str) -> str:
    """The anonymous HTTPS URL of an object (`check_key`ed key, each segment quoted)."""
    return f"{bucket_url.rstrip('/')}/{urllib.parse.quote(check_key(key), safe='/')}"
