"""CRDS servers: which one serves a mission's reference files, and their URIs and URLs.

The Calibration Reference Data System publishes every JWST and HST reference file by name at
`{server}/unchecked_get/references/{observatory}/{name}`, publicly: no login, no token. A
reference file becomes a product of the mount with the URI `crds:{observatory}/{name}`
(`reference_uri`), read through `sources.CrdsFetcher`, which maps it to the URL of its
mission's server (`--crds-server` replaces the default of every mission) and has no token.
Only names `references.reference_name` accepted ever become a URI, and a URI is checked again
before it becomes a URL. Pure: no I/O.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from mastfs.references import reference_name

CRDS_SERVER_ENV = "MASTFS_CRDS_SERVER"
SCHEME = "crds:"
# The public CRDS server of each mission that has one, and its CRDS observatory name.
DEFAULT_SERVERS = {
    "JWST": ("jwst", "https://jwst-crds.stsci.edu"),
    "HST": ("hst", "https://hst-crds.stsci.edu"),
}
REFERENCES_PATH = "/unchecked_get/references"


@dataclass(frozen=True, slots=True)
class CrdsServer:
    """Where one mission's references come from."""

    mission: str  # obs_collection, upper case: JWST
    observatory: str  # CRDS's name for it: jwst
    url: str  # base URL, no trailing slash


def valid_crds_url(url: str) -> str:
    """`url` without a trailing slash if it is `http(s)://host[:port][/path]`; `ValueError`
    naming it otherwise."""
    parts = urllib.parse.urlsplit(url.strip())
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in url.strip())
    ):
        raise ValueError(f"invalid CRDS server URL {url!r} (expected http(s)://host[:port])")
    return url.strip().rstrip("/")


def crds_servers(override: str | None = None) -> dict[str, CrdsServer]:
    """The CRDS server of each mission that has one, by mission: `override` (`--crds-server`,
    else `$MASTFS_CRDS_SERVER`) for every mission, else each mission's public server."""
    chosen = override or os.environ.get(CRDS_SERVER_ENV) or None
    base = valid_crds_url(chosen) if chosen else None
    return {
        mission: CrdsServer(mission, observatory, base or url)
        for mission, (observatory, url) in DEFAULT_SERVERS.items()
    }


def server_for(servers: Mapping[str, CrdsServer], mission: str) -> CrdsServer | None:
    """The CRDS server of a product's mission (`obs_collection`), None for one without."""
    return servers.get(mission.strip().upper())


def is_crds_uri(uri: str) -> bool:
    return uri.startswith(SCHEME)


def reference_uri(observatory: str, name: str) -> str:
    """`crds:jwst/jwst_niriss_dark_0171.fits`; `ValueError` for a name that is not plain."""
    if reference_name(name) != name or observatory not in _OBSERVATORIES:
        raise ValueError(f"not a CRDS reference: {observatory!r}, {name!r}")
    return f"{SCHEME}{observatory}/{name}"


def split_uri(uri: str) -> tuple[str, str]:
    """(observatory, name) of a `reference_uri`; `ValueError` for anything else."""
    observatory, _, name = uri.removeprefix(SCHEME).partition("/")
    if not is_crds_uri(uri) or reference_uri(observatory, name) != uri:
        raise ValueError(f"not a CRDS reference URI: {uri!r}")
    return observatory, name


def reference_url(base: str, uri: str) -> str:
    """The URL of a reference file on the CRDS server at `base`."""
    observatory, name = split_uri(uri)
    return f"{base.rstrip('/')}{REFERENCES_PATH}/{observatory}/{urllib.parse.quote(name)}"


_OBSERVATORIES = frozenset(observatory for observatory, _ in DEFAULT_SERVERS.values())
