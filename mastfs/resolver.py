"""Target names to sky positions, as astroquery 0.4.11 resolves them, with a fallback.

astroquery 0.4.11 asks STScI's name resolver (SANTA), a service of its own on another host:
`GET <resolver>?name=<NAME>&outputFormat=json&resolveAll=False` answers
`{"resolvedCoordinate": [{"searchString": "<name, lower case>", "ra": .., "decl": .., ...}]}`,
and the first entry whose `searchString` is the name asked for, in lower case, is the position
(`astroquery.mast.utils.resolve_object`). Its URL is hard-coded there; here it is `--resolver`
(`DEFAULT_RESOLVER` otherwise). When the resolver cannot be reached, fails, or does not know the
name, the archive's own `Mast.Name.Lookup` service is asked, as mastfs did before, and the
result says so (a note for the user).

Both requests go through the archive's guarded session: bounded in time and size, and the token
is sent to the archive's origin only, never to the resolver.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

DEFAULT_RESOLVER = "http://mastresolver.stsci.edu/Santa-war/query"
RESOLVER_ENV = "MASTFS_RESOLVER"


class NotResolved(Exception):
    """Neither the resolver nor the archive could resolve the name; the message says why."""


@dataclass(frozen=True)
class Position:
    ra: float
    dec: float
    # Set when the resolver failed and the archive's lookup answered: why, for the user.
    note: str = ""


def valid_resolver_url(url: str) -> str:
    """The URL if it is an http(s) URL with a host; ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid resolver URL {url!r} (expected http(s)://host/path)")
    return url


def resolve(
    name: str,
    session: requests.Session,
    resolver: str,
    server: str,
    cleaned: Callable[[str], str] = str,
) -> Position:
    """`name` → position: the resolver first, then the archive at `server`."""
    try:
        ra, dec = _santa(name, session, resolver)
        return Position(ra, dec)
    except _Failed as first:
        why = cleaned(str(first))
    try:
        ra, dec = _lookup(name, session, server)
    except _Failed as second:
        raise NotResolved(
            f"could not resolve target name {name!r}: the resolver at {resolver} {why}; "
            f"the archive at {server} {cleaned(str(second))}"
        ) from None
    return Position(ra, dec, f"the resolver at {resolver} {why}; resolved by the archive")


class _Failed(Exception):
    """One resolver did not give a position; the message reads after its name."""


def _santa(name: str, session: requests.Session, resolver: str) -> tuple[float, float]:
    params = {"name": name, "outputFormat": "json", "resolveAll": "False"}
    doc = _answer(lambda: session.get(resolver, params=params))
    entries = doc.get("resolvedCoordinate") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("searchString", "")) == name.lower():
            return _position(entry)
    raise _Failed(f"does not know {name!r}")


def _lookup(name: str, session: requests.Session, server: str) -> tuple[float, float]:
    request = {"service": "Mast.Name.Lookup", "params": {"input": name, "format": "json"}}
    body = "request=" + urllib.parse.quote(json.dumps(request))
    headers = {"Content-type": "application/x-www-form-urlencoded"}
    doc = _answer(lambda: session.post(server + "/api/v0/invoke", data=body, headers=headers))
    entries = doc.get("resolvedCoordinate") if isinstance(doc, dict) else None
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        return _position(entries[0])
    raise _Failed(f"does not know {name!r}")


def _answer(send: Callable[[], requests.Response]) -> Any:
    import requests

    try:
        response = send()
    except requests.Timeout:
        raise _Failed("did not answer in time") from None
    except requests.ConnectionError:
        raise _Failed("could not be reached") from None
    except requests.RequestException as exc:
        raise _Failed(f"failed: {str(exc)[:200]}") from None
    if response.status_code != 200:
        raise _Failed(f"answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise _Failed("answered something that is not JSON") from None


def _position(entry: dict[str, Any]) -> tuple[float, float]:
    try:
        ra, dec = float(entry["ra"]), float(entry["decl"])
    except (KeyError, TypeError, ValueError):
        raise _Failed("answered without a position") from None
    if not (math.isfinite(ra) and math.isfinite(dec) and abs(dec) <= 90):
        raise _Failed("answered an invalid position")
    return ra % 360.0, dec
