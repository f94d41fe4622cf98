"""Product lists as MAST wants them asked for: small batches, a few in flight, each retried.

astroquery 0.4.11 sends every observation of a query in one `Mast.Caom.Products` request; MAST
advises a few at a time (about five), and big requests time out or have their connection reset
(../shared/design/mast-real.md). Here the observations go in batches:

- the first batches have `FIRST_BATCH` observations; later ones grow toward `TARGET_ROWS`
  product rows per batch (from the rows per observation seen so far), up to `MAX_BATCH`;
- at most `IN_FLIGHT` batches are in flight, each on a connection of its own;
- a batch is retried on its own: a reset or a cut answer splits it in two halves (each retried
  alike, down to single observations, which are asked again after growing pauses, `ATTEMPTS`
  times); a batch the archive did not answer in time is asked again once; a busy answer (429,
  502, 503, 504) is asked again by the transport after the `Retry-After` it names
  (`archive_http.GuardedAdapter`); all within the query's deadline (`--max-query-time`), each
  request within `--timeout`;
- a batch that still fails fails the query with `BatchFailed`, which names the batch, its
  observations and what went wrong. It is never taken for an unreachable archive: the archive
  answered the observation query, so a cached result would hide the failure.

Requests are Mashup requests as astroquery sends them (`mashup.Request`: EXECUTING answers
polled again, every page read), through `archive_http.GuardedAdapter`s, so the token reaches the
archive's origin only and every limit holds. Rows come back as the JSON objects MAST sent, made
typeable by `archive_http.portal_document`; `archive.py` validates their values. astroquery's own
`get_product_list` is not used: it asks for the columns configuration first (one more call),
converts every answer to an astropy Table, and keeps per-request state on one session, so it
cannot run batches side by side.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from mastfs import archive_http, mashup
from mastfs.archive_http import LimitExceeded, Limits

log = logging.getLogger(__name__)

SERVICE = "Mast.Caom.Products"
FIRST_BATCH = 5  # MAST's advice: product lists of about five observations at a time
MAX_BATCH = 100
TARGET_ROWS = 5000  # rows per batch that later batches are sized for
IN_FLIGHT = 8
# Pauses between attempts of one batch when the archive names none: 0.5, 1, 2, 4, 8 s.
FIRST_PAUSE = 0.5
MAX_PAUSE = 8.0
# Attempts of one batch (or half-batch) before the query fails; of a batch the archive did not
# answer in time, fewer: a silent archive should cost a few --timeouts, not many.
ATTEMPTS = 5
TIMEOUT_ATTEMPTS = 2

Row = dict[str, Any]


class BatchFailed(Exception):
    """A batch's product list could not be had; the message names the batch and the cause."""


class _BatchError(Exception):
    """A batch failed for good; the message says why (without naming the batch)."""


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not; `split` when the request itself
    may be too big (a reset, a cut answer); `attempts`: how many such failures end it."""

    def __init__(self, reason: str, split: bool, attempts: int = ATTEMPTS) -> None:
        super().__init__(reason)
        self.reason = reason
        self.split = split
        self.attempts = attempts


@dataclass(frozen=True)
class Batch:
    number: int  # 1-based, in the order batches were made
    obsids: tuple[str, ...]

    def describe(self, total: int) -> str:
        first, last = self.obsids[0], self.obsids[-1]
        span = first if first == last else f"{first}..{last}"
        n = len(self.obsids)
        return f"batch {self.number}/{total} (observation{'s' if n > 1 else ''} {span}, {n})"


@dataclass
class Outcome:
    rows: list[Row]
    split: bool = False  # the archive could not answer the batch whole


class _Planner:
    """Which observations go in the next batch, and how many batches there will be."""

    def __init__(self, obsids: Sequence[str]) -> None:
        self._left = list(obsids)
        self._next = 0
        self.made = 0
        self.size = FIRST_BATCH
        self.cap = MAX_BATCH
        self._rows = 0
        self._observations = 0

    def next(self) -> Batch | None:
        if self._next >= len(self._left):
            return None
        take = self._left[self._next : self._next + self.size]
        self._next += len(take)
        self.made += 1
        return Batch(self.made, tuple(take))

    def done(self, batch: Batch, rows: int, split: bool) -> None:
        self._observations += len(batch.obsids)
        self._rows += rows
        if split:
            # The archive could not answer this many at once: never ask for as many again.
            self.cap = max(1, min(self.cap, len(batch.obsids) // 2))
        per_observation = max(self._rows / self._observations, 1.0)
        grown = int(TARGET_ROWS / per_observation)
        self.size = max(1, min(self.cap, max(FIRST_BATCH, grown)))

    def total(self) -> int:
        """Batches made so far plus those the rest will take at the current size."""
        return self.made + math.ceil((len(self._left) - self._next) / self.size)


class ProductLists:
    """Fetches the product lists of many observations for one archive, token and `Limits`."""

    def __init__(self, server: str, token: str | None, limits: Limits) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self.limits = limits
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        # Mashup requests made (each with its polls and pages), rows that were not JSON objects.
        self.requests = 0
        self.malformed_rows = 0

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()

    def fetch(
        self,
        obsids: Sequence[str],
        deadline: float,
        take: Callable[[Sequence[Row]], None],
        progress: Callable[[str], None],
        rows_before: int = 0,
    ) -> int:
        """Fetch the product lists of `obsids`, handing each batch's rows to `take` (on this
        thread, in the order of `obsids`). Returns the number of batches. `rows_before`: rows
        of the query so far (its observations), which count against `Limits.max_rows` too.

        `BatchFailed` or `LimitExceeded` when the query cannot complete."""
        planner = _Planner(obsids)
        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="products")
        running: dict[concurrent.futures.Future[Outcome], Batch] = {}
        finished: dict[int, Outcome] = {}
        handed = 0  # batches handed to `take`, in order
        rows = observations = 0
        try:

            def submit() -> None:
                while len(running) < IN_FLIGHT:
                    batch = planner.next()
                    if batch is None:
                        return
                    running[pool.submit(self._batch, batch, deadline, stop)] = batch

            submit()
            while running:
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    batch = running.pop(future)
                    try:
                        outcome = future.result()
                    except LimitExceeded:
                        raise
                    except Exception as exc:
                        # A _BatchError says why; anything else is named as it is.
                        why = str(exc) if isinstance(exc, _BatchError) else repr(exc)[:200]
                        raise BatchFailed(
                            f"failed the product list of {batch.describe(planner.total())}: {why}"
                        ) from None
                    finished[batch.number] = outcome
                    planner.done(batch, len(outcome.rows), outcome.split)
                    observations += len(batch.obsids)
                    rows += len(outcome.rows)
                    if rows_before + rows > self.limits.max_rows:
                        raise LimitExceeded(
                            f"the archive's answer has more than {self.limits.max_rows} rows "
                            "(--max-rows)"
                        )
                while handed + 1 in finished:
                    handed += 1
                    take(finished.pop(handed).rows)
                submit()
                progress(
                    f"product lists: {handed + len(finished)}/{planner.total()} "
                    f"({observations}/{len(obsids)} observations, {rows} product rows)"
                )
            return planner.made
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    # -- one batch, in a worker thread -----------------------------------------------------------

    def _batch(self, batch: Batch, deadline: float, stop: threading.Event) -> Outcome:
        outcome = Outcome([])
        self._part(list(batch.obsids), deadline, stop, outcome)
        return outcome

    def _part(
        self, obsids: list[str], deadline: float, stop: threading.Event, out: Outcome
    ) -> None:
        """The rows of `obsids` appended to `out`, retried (and split) as the module says."""
        pause = FIRST_PAUSE
        for attempt in range(1, ATTEMPTS + 1):
            if stop.is_set():
                raise _BatchError("cancelled")
            try:
                out.rows.extend(self._request(obsids, deadline))
                return
            except _Retryable as exc:
                if exc.split and len(obsids) > 1:
                    log.info("product list of %d observations failed (%s): split", len(obsids),
                             exc.reason)  # fmt: skip
                    out.split = True
                    half = len(obsids) // 2
                    self._part(obsids[:half], deadline, stop, out)
                    self._part(obsids[half:], deadline, stop, out)
                    return
                if attempt >= exc.attempts:
                    raise _BatchError(f"{exc.reason} ({attempt} attempts)") from None
                wait, pause = pause, min(pause * 2, MAX_PAUSE)
                if time.monotonic() + wait >= deadline:
                    raise _BatchError(
                        f"{exc.reason}; the next attempt would come after "
                        f"--max-query-time ({self.limits.query_time:g} s)"
                    ) from None
                log.info("product list: %s; again in %.1f s", exc.reason, wait)
                if stop.wait(wait):
                    raise _BatchError("cancelled") from None
        raise AssertionError("unreachable")

    def _session(self) -> tuple[requests.Session, archive_http.GuardedAdapter]:
        found = getattr(self._local, "session", None)
        if found is None:
            session = requests.Session()
            adapter = archive_http.GuardedAdapter(self.server, self._token, self.limits)
            archive_http.install(session, adapter)
            session.trust_env = True
            found = (session, adapter)
            self._local.session = found
            with self._lock:
                self._sessions.append(session)
        return found

    def _request(self, obsids: list[str], deadline: float) -> list[Row]:
        """One Mashup request for `obsids`: its polls and all its pages."""
        session, adapter = self._session()
        request = mashup.Request(SERVICE, {"obsid": ",".join(obsids)})
        try:
            with adapter.query(deadline):
                rows = request.rows(session, self.server)
        except LimitExceeded:
            raise
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            tried = (
                f" ({archive_http.BUSY_ATTEMPTS} attempts)" if status in archive_http.BUSY else ""
            )
            raise _BatchError(f"it answered HTTP {status}{tried}") from None
        except requests.Timeout as exc:
            raise _Retryable(
                f"it did not answer: {exc}", split=False, attempts=TIMEOUT_ATTEMPTS
            ) from None
        except requests.ConnectionError:
            raise _Retryable("it closed the connection", split=True) from None
        except requests.RequestException as exc:
            raise _Retryable(f"its answer was cut: {type(exc).__name__}", split=True) from None
        except mashup.MashupError as exc:
            raise _BatchError(str(exc)) from None
        finally:
            with self._lock:
                self.requests += 1
                self.malformed_rows += adapter.malformed_rows
        return rows
