"""The archive transport's rules, without a network: which requests carry the token, and how a
Portal answer is made one astroquery can type. The same rules against real servers (redirects,
stalls, bombs) are in tests/core/test_hostile_archive.py."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from mastfs.archive_http import (
    INVALID_INT,
    TOKEN_COOKIE,
    GuardedAdapter,
    Limits,
    install,
    origin,
    portal_document,
)

TOKEN = "secret-token-0123"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://mast.stsci.edu", ("https", "mast.stsci.edu", 443)),
        ("https://MAST.stsci.edu:443/api/v0/invoke", ("https", "mast.stsci.edu", 443)),
        ("http://mast.stsci.edu/whoami", ("http", "mast.stsci.edu", 80)),
        ("http://127.0.0.1:8765/x?y=1", ("http", "127.0.0.1", 8765)),
        ("ftp://mast.stsci.edu/", None),
        ("https:///nohost", None),
        ("http://host:notaport/", None),
    ],
)
def test_origin(url: str, expected: object) -> None:
    assert origin(url) == expected


def sent_cookie(server: str, url: str, jar_cookie: str | None = None) -> str | None:
    """The Cookie header a request for `url` leaves with, through an adapter for `server`."""
    adapter = GuardedAdapter(server, TOKEN, Limits())
    request = requests.Request("GET", url, headers={"Cookie": jar_cookie} if jar_cookie else {})
    wire = adapter._with_token(request.prepare())
    value = wire.headers.get("Cookie")
    return value if isinstance(value, str) or value is None else value.decode()


@pytest.mark.parametrize(
    "url",
    [
        "https://mast.stsci.edu/api/v0/invoke",
        "https://mast.stsci.edu:443/whoami",
        "https://MAST.STSCI.EDU/portal/Mashup/Mashup.asmx/columnsconfig",
    ],
)
def test_token_goes_to_the_configured_origin(url: str) -> None:
    assert sent_cookie("https://mast.stsci.edu", url) == f"{TOKEN_COOKIE}={TOKEN}"


@pytest.mark.parametrize(
    "url",
    [
        "http://mast.stsci.edu/whoami",  # downgrade to http
        "http://mast.stsci.edu:443/whoami",  # downgrade, same port
        "https://mast.stsci.edu:8443/whoami",  # another port
        "https://evil.example/whoami",  # another host
        "https://mast.stsci.edu.evil.example/whoami",
    ],
)
def test_token_never_leaves_the_origin(url: str) -> None:
    assert sent_cookie("https://mast.stsci.edu", url) is None


def test_a_token_cookie_from_the_jar_is_replaced_or_dropped() -> None:
    # The archive (or a redirect's target) set a cookie of the same name: never sent.
    jar = f"session=abc; {TOKEN_COOKIE}=planted"
    assert sent_cookie("https://mast.stsci.edu", "https://mast.stsci.edu/x", jar) == (
        f"session=abc; {TOKEN_COOKIE}={TOKEN}"
    )
    assert sent_cookie("https://mast.stsci.edu", "https://evil.example/x", jar) == "session=abc"


def test_install_takes_every_url_and_empties_the_jar_of_tokens() -> None:
    session = requests.Session()
    session.cookies.set(TOKEN_COOKIE, TOKEN)  # what astroquery's own login does
    adapter = GuardedAdapter("https://mast.stsci.edu", TOKEN, Limits())
    install(session, adapter)
    assert TOKEN_COOKIE not in session.cookies
    assert session.get_adapter("https://elsewhere.example/") is adapter
    assert session.get_adapter("http://mast.stsci.edu/") is adapter
    # The request astroquery built (and logs) has no token; only the copy on the wire has.
    prepared = session.prepare_request(requests.Request("GET", "https://mast.stsci.edu/whoami"))
    assert "Cookie" not in prepared.headers


def answer(rows: list[Any], types: dict[str, str]) -> dict[str, Any]:
    return {
        "status": "COMPLETE",
        "fields": [{"name": n, "type": t} for n, t in types.items()],
        "data": rows,
    }


def test_portal_values_astroquery_cannot_type_are_replaced() -> None:
    types = {"size": "long", "t_max": "float", "name": "string", "weird": "quaternion"}
    doc = answer(
        [
            {"size": 10**20, "t_max": 10**400, "name": "a"},
            {"size": 1e20, "t_max": "soon", "name": 5},
            {"size": "12", "t_max": 1e300, "name": None},
            {"size": "many", "t_max": 59000, "name": "b"},
            {"size": True, "t_max": None, "name": "c"},
            {"size": 2880, "t_max": 59000.5, "name": "d"},
            "not a row",
            ["nor", "this"],
        ],
        types,
    )
    assert portal_document(doc) == 2
    assert [r["size"] for r in doc["data"]] == [INVALID_INT, INVALID_INT, 12, INVALID_INT, 1, 2880]
    assert [r["t_max"] for r in doc["data"]] == [None, None, 1e300, 59000.0, None, 59000.5]
    assert doc["fields"][3]["type"] == "string"


def test_portal_document_leaves_other_answers_alone() -> None:
    for doc in ({"status": "EXECUTING"}, [1, 2], None, {"fields": "x", "data": []}):
        assert portal_document(doc) == 0
