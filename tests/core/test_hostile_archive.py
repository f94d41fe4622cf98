"""No answer from the archive is trusted: the query session and `mastfs ls` against a hostile
archive (tests/support/hostile.py in front of the simulator).

- The token reaches only the configured origin, whatever redirects the archive sends.
- A bad row (a size of 1e20, a time of 1e300, NUL, ESC, lone surrogates, formula prefixes) is
  dropped or repaired; it never fails the query, and the query cache keeps only valid rows.
- Every answer is bounded: size after decompression, pages, rows, time per request (stalls and
  trickles) and per query; lies about lengths and encodings fail cleanly, in one line.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastfs import product_lists
from mastfs.archive import MAX_MTIME, MAX_SIZE, Query, flush_query_cache
from mastfs.archive_http import TOKEN_COOKIE, Limits
from mastfs.safetext import REPLACEMENT
from mastfs.session import Session, SessionError
from mastfs.sim.catalog import AUTHORIZED_TOKEN, TOKENS
from tests.support.bad_rows import BAD_NAMES, BAD_SIZES, FORMULA_NAME, SEG1, bad_rows
from tests.support.catalog import catalog_rows
from tests.support.hostile import (
    HostileProxy,
    body,
    executing_forever,
    gzip_bomb,
    headers,
    hostile,
    lie_encoding,
    lie_length,
    page_forever,
    path,
    portal,
    redirect,
    stall,
    trickle,
)
from tests.support.mounting import MASTFS
from tests.support.session import Recorder, run_session

ADA = TOKENS[AUTHORIZED_TOKEN].display_name
FAST = Limits(timeout=2.0)
# What `mastfs ls` may print besides text: line ends (CRLF in --csv).
ALLOWED_CONTROLS = {"\n", "\r"}


def session(
    url: str,
    cache: Path,
    program: str = "2734",
    token: str | None = None,
    limits: Limits = FAST,
    target: str | None = None,
) -> tuple[Session, Recorder]:
    query = Query(target=target, radius_deg=1 / 60) if target else Query(programs=(program,))
    return run_session(url, cache, query, token=token, limits=limits)


def failure(url: str, cache: Path, **kwargs: Any) -> tuple[str, float]:
    """The one-line error of a session that must fail, and how long it took."""
    start = time.monotonic()
    with pytest.raises(SessionError) as info:
        session(url, cache, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message, time.monotonic() - start


def fresh_columns_config() -> None:
    """astroquery asks for a service's columnsconfig once per process (a class attribute)."""
    from astroquery.mast.discovery_portal import PortalAPI

    PortalAPI._column_configs.clear()


@pytest.fixture
def proxy(sim_url: str) -> Iterator[HostileProxy]:
    with hostile(sim_url) as p:
        yield p


@pytest.fixture
def elsewhere(sim_url: str) -> Iterator[HostileProxy]:
    """Another origin: forwards to the simulator too, and records what reaches it."""
    with hostile(sim_url) as p:
        yield p


# -- part 4: the token reaches only the configured origin ------------------------------------------


def test_the_token_goes_to_the_archive(proxy: HostileProxy, tmp_path: Path) -> None:
    s, _ = session(proxy.url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
    assert s.user is not None and s.user.display_name == ADA
    assert proxy.saw(AUTHORIZED_TOKEN)  # the check below can fail
    # The session's cookie jar never held it.
    assert TOKEN_COOKIE not in s.archive._session.cookies


REDIRECTED = {
    "whoami": path("/whoami"),
    "columnsconfig": path("/portal/Mashup/Mashup.asmx/columnsconfig"),
    "observations": portal("Mast.Caom.Filtered"),
    "products": portal("Mast.Caom.Products"),
    "every Portal request": portal(),
}


@pytest.mark.parametrize("status", [302, 307, 308])
@pytest.mark.parametrize("what", REDIRECTED)
def test_a_redirect_to_another_origin_drops_the_token(
    proxy: HostileProxy, elsewhere: HostileProxy, tmp_path: Path, what: str, status: int
) -> None:
    proxy.on(REDIRECTED[what], redirect(elsewhere.url, status))
    fresh_columns_config()
    if what == "whoami":
        # Without its token, the other origin says "anonymous": the login fails, tokenless.
        message, _ = failure(proxy.url, tmp_path, program="6543", token=AUTHORIZED_TOKEN)
        assert "token was rejected" in message
    elif status == 302:
        # A POST redirected by 302 becomes a GET without its body: no answer to the query.
        message, _ = failure(proxy.url, tmp_path, program="6543", token=AUTHORIZED_TOKEN)
        assert message.startswith(f"the archive at {proxy.url} ")
    else:
        s, _ = session(proxy.url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
        assert s.result.products
    assert elsewhere.seen, "the redirect was not followed"
    assert not elsewhere.saw(AUTHORIZED_TOKEN)
    assert proxy.saw(AUTHORIZED_TOKEN)


def test_name_resolution_redirected_drops_the_token(
    proxy: HostileProxy, elsewhere: HostileProxy, tmp_path: Path
) -> None:
    proxy.on(portal("Mast.Name.Lookup"), redirect(elsewhere.url, 307))
    s, _ = session(proxy.url, tmp_path, token=AUTHORIZED_TOKEN, target="WASP-96")
    assert s.result.products
    assert [r.portal()["service"] for r in elsewhere.seen] == ["Mast.Name.Lookup"]  # type: ignore[index]
    assert not elsewhere.saw(AUTHORIZED_TOKEN)


def test_a_redirect_chain_back_to_the_archive_keeps_it_on_the_archive_only(
    proxy: HostileProxy, elsewhere: HostileProxy, tmp_path: Path
) -> None:
    # archive -> elsewhere -> archive: the token is sent on the first and last hop only.
    proxy.on(path("/whoami"), redirect(elsewhere.url, 307), times=1)
    elsewhere.on(path("/whoami"), redirect(proxy.url, 307))
    s, _ = session(proxy.url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
    assert s.user is not None and s.user.display_name == ADA
    assert [r.path for r in elsewhere.seen] == ["/whoami"]
    assert not elsewhere.saw(AUTHORIZED_TOKEN)


def test_debug_logs_never_show_the_token(
    proxy: HostileProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every logger at DEBUG (mastfs --debug): urllib3 then logs every request it sends.
    caplog.set_level(logging.DEBUG)
    urllib3_log = logging.getLogger("urllib3")
    level = urllib3_log.level
    try:
        urllib3_log.setLevel(logging.DEBUG)
        session(proxy.url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
    finally:
        urllib3_log.setLevel(level)
    assert any("/whoami" in r.getMessage() for r in caplog.records)
    assert not any(AUTHORIZED_TOKEN in r.getMessage() for r in caplog.records)


# -- part 5: a bad row never fails the query ---------------------------------------------------


def test_bad_rows_are_dropped_or_repaired(proxy: HostileProxy, tmp_path: Path) -> None:
    bad_rows(proxy)
    s, reporter = session(proxy.url, tmp_path)
    products = s.result.products
    names = {p.productFilename for p in products}
    assert not names & set(BAD_SIZES)
    # A file is listed by its exposure and by the level-3 observation it is a member of.
    n = sum(r["productFilename"] in BAD_SIZES for r in catalog_rows("2734"))
    assert n >= len(BAD_SIZES) and s.result.dropped == n
    first = f"mast:JWST/product/{SEG1}_uncal.fits"
    assert [w for w in reporter.warnings if "invalid size" in w] == [
        f"dropped {n} product rows with an invalid size (first: {first})"
    ]
    assert f"({n} invalid rows dropped)" in reporter.progress_lines[-1]
    for _, good in BAD_NAMES.values():
        assert good in names
    for p in products:
        assert 0 <= p.size <= MAX_SIZE and 0 <= p.mtime <= MAX_MTIME
        for text in (p.productFilename, p.description, p.obs_id):
            text.encode("utf-8")
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    assert max(p.mtime for p in products) == MAX_MTIME
    # The folder still lists, with the repaired names, and the CSV neutralises the formula.
    snap = s.state.snapshot
    folder = snap.tree.lookup_path(f"JWST/{SEG1}")
    assert folder is not None
    listed = {e.name for e in snap.tree.children(folder.inode)}
    assert BAD_NAMES[f"{SEG1}_cal.fits"][1] in listed
    cells = {row["Filename"] for row in csv.DictReader(io.StringIO(snap.csv.decode()))}
    assert "'" + FORMULA_NAME in cells and FORMULA_NAME not in cells


def test_the_query_cache_keeps_only_valid_rows(sim_url: str, tmp_path: Path) -> None:
    with hostile(sim_url) as proxy:
        bad_rows(proxy)
        live, _ = session(proxy.url, tmp_path)
        url = proxy.url
    flush_query_cache()
    (cached_file,) = (tmp_path / "queries").iterdir()
    doc = json.loads(cached_file.read_text())
    assert all(0 <= p["size"] <= MAX_SIZE for p in doc["products"])
    assert max(p["mtime"] for p in doc["products"]) == MAX_MTIME
    # The archive is gone (the proxy's port is closed): the cached result serves.
    offline, _ = session(url, tmp_path)
    assert offline.result.from_cache
    assert offline.result.products == live.result.products


def test_rows_from_the_query_cache_are_validated_again(sim_url: str, tmp_path: Path) -> None:
    with hostile(sim_url) as proxy:
        session(proxy.url, tmp_path)
        url = proxy.url
    flush_query_cache()
    (cached_file,) = (tmp_path / "queries").iterdir()
    doc = json.loads(cached_file.read_text())
    first, second, third = doc["products"][:3]
    # What an older mastfs stored, or someone edited: kept as it was read back before.
    first["mtime"] = 8.64e304
    second["size"] = 10**20
    third["productFilename"] = "x\x1b[31m\ud800.fits"
    doc["products"].append("not a row")
    doc["products"].append({"dataURI": "mast:JWST/product/x.fits", "size": 1, "bogus": 1})
    cached_file.write_text(json.dumps(doc))
    s, reporter = session(url, tmp_path)
    assert s.result.from_cache
    products = s.result.products
    assert len(products) == len(doc["products"]) - 2
    assert max(p.mtime for p in products) == MAX_MTIME
    assert all(p.size <= MAX_SIZE for p in products)
    assert f"x{REPLACEMENT}[31m{REPLACEMENT}.fits" in {p.productFilename for p in products}
    assert s.result.dropped == 2
    assert any("invalid size" in w for w in reporter.warnings)


def test_bytes_that_are_not_utf8_become_replacement_characters(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    proxy.on(
        portal("Mast.Caom.Products"),
        body(lambda data: data.replace(b"_cal.fits", b"_c\xff\xfeal.fits")),
    )
    s, _ = session(proxy.url, tmp_path)
    names = {p.productFilename for p in s.result.products}
    assert f"{SEG1}_c{REPLACEMENT}{REPLACEMENT}al.fits" in names


def test_a_charset_lie_is_not_believed(proxy: HostileProxy, tmp_path: Path) -> None:
    proxy.on(portal(), headers(Content_Type="application/json; charset=utf-16"))
    s, _ = session(proxy.url, tmp_path)
    assert len(s.result.products) == 308


# -- part 6: limits on every answer --------------------------------------------------------------


def test_a_gzip_bomb_is_refused(proxy: HostileProxy, tmp_path: Path) -> None:
    proxy.on(portal("Mast.Caom.Filtered"), gzip_bomb(64 << 20))
    message, _ = failure(proxy.url, tmp_path, limits=Limits(max_response=16 << 20))
    assert "larger than 16 MiB (--max-response)" in message


def test_pages_that_never_end_are_refused(proxy: HostileProxy, tmp_path: Path) -> None:
    proxy.on(portal("Mast.Caom.Products"), page_forever())
    message, _ = failure(proxy.url, tmp_path, limits=Limits(max_pages=5))
    assert "more than 5 pages (--max-pages)" in message
    pages = [r.portal()["page"] for r in proxy.seen if r.portal()]  # type: ignore[index]
    assert max(pages) == 5


def test_too_many_rows_are_refused(proxy: HostileProxy, tmp_path: Path) -> None:
    message, _ = failure(proxy.url, tmp_path, limits=Limits(max_rows=100))
    assert "more than 100 rows (--max-rows)" in message


def test_a_query_that_never_completes_ends(proxy: HostileProxy, tmp_path: Path) -> None:
    proxy.on(portal("Mast.Caom.Products"), executing_forever())
    message, took = failure(proxy.url, tmp_path, limits=Limits(query_time=3.0))
    assert "longer than 3 s (--max-query-time)" in message
    assert took < 3.0 + 5


STALLED = {
    "whoami": path("/whoami"),
    "columnsconfig": path("/portal/Mashup/Mashup.asmx/columnsconfig"),
    "observations": portal("Mast.Caom.Filtered"),
    "products": portal("Mast.Caom.Products"),
}


@pytest.mark.parametrize("what", STALLED)
def test_a_silent_archive_fails_within_the_timeout(
    proxy: HostileProxy, tmp_path: Path, what: str
) -> None:
    proxy.on(STALLED[what], stall())
    fresh_columns_config()
    message, took = failure(proxy.url, tmp_path, program="6543", token=AUTHORIZED_TOKEN)
    assert "did not answer" in message and "within 2 s (--timeout)" in message
    # One timeout, not one per request (a silent /whoami is not asked twice); a product list is
    # asked again once (issue 14: each batch retried on its own), after a short pause.
    again = product_lists.TIMEOUT_ATTEMPTS if what == "products" else 1
    assert took < (again + 1) * FAST.timeout + 2


@pytest.mark.parametrize("what", ["observations", "products"])
def test_a_trickle_cannot_outlast_the_timeout(
    proxy: HostileProxy, tmp_path: Path, what: str
) -> None:
    proxy.on(STALLED[what], trickle(step=1, interval=0.05))
    message, took = failure(proxy.url, tmp_path)
    assert "within 2 s (--timeout)" in message
    again = product_lists.TIMEOUT_ATTEMPTS if what == "products" else 1
    assert took < again * FAST.timeout + 3


def test_a_silent_archive_falls_back_to_the_cached_query(sim_url: str, tmp_path: Path) -> None:
    with hostile(sim_url) as proxy:
        live, _ = session(proxy.url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
        proxy.on(path("/"), stall())
        start = time.monotonic()
        offline, reporter = session(proxy.url, tmp_path, "6543", token=AUTHORIZED_TOKEN)
        took = time.monotonic() - start
    assert offline.result.from_cache and offline.result.products == live.result.products
    assert took < 2 * FAST.timeout + 2
    assert any("the MAST token could not be checked" in w for w in reporter.warnings)


@pytest.mark.parametrize("lie", [lie_length(), lie_encoding("gzip"), lie_encoding("deflate")])
def test_lies_about_lengths_and_encodings_fail_cleanly(
    proxy: HostileProxy, tmp_path: Path, lie: Any
) -> None:
    proxy.on(portal("Mast.Caom.Products"), lie)
    message, _ = failure(proxy.url, tmp_path)
    assert message.startswith(f"the archive at {proxy.url} ")


# -- mastfs ls, as a user runs it ------------------------------------------------------------------


def run_ls(
    url: str, cache: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[bytes], int]:
    """`mastfs ls` and its peak memory (KiB): the child of a small Python that reports it."""
    measure = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:]); "
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
        "sys.stderr.write(f'\\nPEAK {peak}\\n'); sys.exit(done.returncode)"
    )
    argv = [*MASTFS, "ls", "--server", url, "--cache-dir", str(cache), *args]
    done = subprocess.run(
        [sys.executable, "-c", measure, *argv],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    err, _, peak = done.stderr.rpartition(b"\nPEAK ")
    done.stderr = err
    return done, int(peak)


def controls(data: bytes) -> set[str]:
    text = data.decode("utf-8")  # also: valid UTF-8
    return {c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F} - ALLOWED_CONTROLS


def test_ls_prints_no_control_characters(proxy: HostileProxy, tmp_path: Path) -> None:
    bad_rows(proxy, sizes=False)
    proxy.on(path("/whoami"), body(lambda data: data.replace(ADA.encode(), b"Ada \\u001b[2J")))
    token = {"MAST_API_TOKEN": AUTHORIZED_TOKEN}
    table, _ = run_ls(proxy.url, tmp_path, "--program", "2734", env=token)
    assert table.returncode == 0, table.stderr
    assert BAD_NAMES[f"{SEG1}_cal.fits"][1].encode() in table.stdout
    as_csv, _ = run_ls(proxy.url, tmp_path, "--program", "2734", "--csv", env=token)
    assert as_csv.returncode == 0, as_csv.stderr
    assert f",'{FORMULA_NAME},".encode() in as_csv.stdout
    for out in (table.stdout, table.stderr, as_csv.stdout, as_csv.stderr):
        assert not controls(out), out


def test_ls_error_from_the_archive_prints_no_control_characters(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    evil = json.dumps({"status": "ERROR", "msg": "bad \x1b[2J\x1b]0;owned\x07 request"})
    proxy.on(portal("Mast.Caom.Filtered"), body(lambda _: evil.encode()))
    done, _ = run_ls(proxy.url, tmp_path, "--program", "2734")
    assert done.returncode == 1
    assert not controls(done.stderr), done.stderr
    errors = [line for line in done.stderr.decode().splitlines() if "error:" in line]
    assert errors == [
        f"mastfs: error: the archive at {proxy.url} failed while querying observations: "
        f"bad {REPLACEMENT}[2J{REPLACEMENT}]0;owned{REPLACEMENT} request"
    ]


def test_ls_against_a_silent_archive_ends_within_its_timeout(
    proxy: HostileProxy, tmp_path: Path
) -> None:
    proxy.on(path("/"), stall())
    start = time.monotonic()
    done, _ = run_ls(proxy.url, tmp_path, "--program", "2734", "--timeout", "3")
    took = time.monotonic() - start
    assert done.returncode == 1
    errors = [line for line in done.stderr.decode().splitlines() if "error:" in line]
    assert len(errors) == 1 and "within 3 s (--timeout)" in errors[0], done.stderr
    assert took < 3 + 12  # the timeout, and starting Python with astropy


def test_ls_memory_stays_bounded_under_a_gzip_bomb(proxy: HostileProxy, tmp_path: Path) -> None:
    done, normal = run_ls(proxy.url, tmp_path, "--program", "2734")
    assert done.returncode == 0
    proxy.on(portal("Mast.Caom.Filtered"), gzip_bomb(1 << 30))
    done, bombed = run_ls(proxy.url, tmp_path, "--program", "2734")
    assert done.returncode == 1
    assert b"(--max-response)" in done.stderr
    # The default limit (128 MiB) read, then refused: not the gigabyte it inflates to.
    assert bombed - normal < 200 << 10, (normal, bombed)


@pytest.mark.parametrize(
    "args",
    [["--max-rows", "0"], ["--max-pages", "-1"], ["--timeout", "nan"], ["--max-response", "x"]],
)
def test_limit_flags_are_checked(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run(
        [*MASTFS, "ls", "--program", "2734", "--cache-dir", str(tmp_path), *args],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2 and b"Traceback" not in done.stderr
