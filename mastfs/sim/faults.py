"""Fault injection knobs for the archive simulator: what can go wrong, and when it does.

Every knob is off by default. The server consults `Faults.plan(...)` once per request; when no
knob is set, `active` is False and the file-serving fast path never looks at faults again.
Decisions are counter-based, not random, so a test that sets `error_rate=0.5` sees exactly every
second eligible request fail, in every run.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class FaultConfigError(ValueError):
    """A fault setting that is unknown or out of range; the message names it."""


@dataclass
class FaultSettings:
    """The knobs. JSON names are the field names; see docs/simulator.md."""

    # Sleep this long before answering each request (all endpoints).
    latency_ms: float = 0.0
    # Cap body throughput per connection, bytes/s (0 = unlimited).
    bandwidth: int = 0
    # Fraction (0..1) of eligible requests answered with `error_status` instead.
    error_rate: float = 0.0
    error_status: int = 503
    # Only file downloads (Download/file, /files/...) are eligible for injected errors.
    error_downloads_only: bool = False
    # Abort the connection (TCP RST) after this many body bytes, or this fraction of the body.
    reset_after: int | None = None
    reset_fraction: float | None = None
    # Pause for `stall_seconds` after `stall_after` body bytes.
    stall_after: int | None = None
    stall_seconds: float = 0.0
    # Answer `Range` requests with 200 and the whole body, as a server without range support.
    ignore_range: bool = False
    # Answer this many polls of each new Portal request (per cacheBreaker) with EXECUTING.
    executing_polls: int = 0
    # Only requests whose data URI (or, for other endpoints, path) contains this substring.
    scope: str = ""
    # Stop injecting errors, resets, stalls and lying bodies after this many (None = unlimited).
    max_faults: int | None = None
    # Lying download answers (GET bodies; HEAD for the header lies), each counted as a fault:
    # end the body this many bytes before its promised end ...
    short_body: int | None = None
    # ... or send this many bytes more than promised;
    long_body: int | None = None
    # how the body is delimited: "length" (Content-Length), "chunked", "close" (no length,
    # the body ends when the connection does);
    framing: str = "length"
    # compress the body with this coding ("gzip") and say so in Content-Encoding, with a
    # Content-Length of the encoded bytes unless `encoded_length` is False (then the identity
    # length, which the encoded body does not match);
    content_encoding: str = ""
    encoded_length: bool = True
    # add this many bytes (may be negative) to the Content-Length header, body unchanged.
    wrong_length: int = 0
    # -- the real archive's manners (issue 14; the "mast" profile sets them, `profiles.py`) --
    # Sleep this much more before answering an API call (Portal, columnsconfig, whoami, the
    # resolver, bundle), on top of `latency_ms`.
    api_latency_ms: float = 0.0
    # Server time per row of a `Mast.Caom.Products` result, spent on its first page only.
    product_ms_per_row: float = 0.0
    # Reset the connection (no answer) of a product-list request naming more observations,
    # or whose result has more rows, than this.
    products_max_obs: int | None = None
    products_max_rows: int | None = None
    # Every authorization failure is 401 (else a user without rights gets 403).
    auth_401_only: bool = False
    # Downloads whose URI contains this text come without ETag (Last-Modified only) ...
    no_etag: str = ""
    # ... or without Content-Length (chunked), as MAST's generated files do ("" = none).
    no_length: str = ""
    # `mast:<MISSION>/url/...` downloads answer 302 to the simulator's second host ...
    url_redirect: bool = False
    # ... which answers Range with 200 and the whole body.
    redirect_ignores_range: bool = False
    # Cone and position searches also find TESS and TICA full-frame-image observations.
    tess_ffi: bool = False
    # Of every `burst_every` requests, the last `burst_length` are answered 503 ...
    burst_every: int = 0
    burst_length: int = 0
    # ... with `Retry-After: N` (whole seconds), also sent with `error_rate` errors.
    retry_after: int | None = None
    # The CRDS host (`api_crds.py`) answers every request 503.
    crds_unavailable: bool = False

    def validate(self) -> None:
        if self.latency_ms < 0:
            raise FaultConfigError("latency_ms must be >= 0")
        if self.bandwidth < 0:
            raise FaultConfigError("bandwidth must be >= 0 (bytes/s; 0 = unlimited)")
        if not 0.0 <= self.error_rate <= 1.0:
            raise FaultConfigError("error_rate must be between 0 and 1")
        if not 500 <= self.error_status <= 599:
            raise FaultConfigError("error_status must be a 5xx code")
        if self.reset_after is not None and self.reset_after < 0:
            raise FaultConfigError("reset_after must be >= 0")
        if self.reset_fraction is not None and not 0.0 <= self.reset_fraction < 1.0:
            raise FaultConfigError("reset_fraction must be in [0, 1)")
        if self.stall_after is not None and self.stall_after < 0:
            raise FaultConfigError("stall_after must be >= 0")
        if self.stall_seconds < 0:
            raise FaultConfigError("stall_seconds must be >= 0")
        if self.executing_polls < 0:
            raise FaultConfigError("executing_polls must be >= 0")
        if self.max_faults is not None and self.max_faults < 0:
            raise FaultConfigError("max_faults must be >= 0")
        if self.short_body is not None and self.short_body < 1:
            raise FaultConfigError("short_body must be >= 1 (bytes missing from each body)")
        if self.long_body is not None and self.long_body < 1:
            raise FaultConfigError("long_body must be >= 1 (bytes added to each body)")
        if self.framing not in FRAMINGS:
            raise FaultConfigError(f"framing must be one of {', '.join(FRAMINGS)}")
        for name in ("api_latency_ms", "product_ms_per_row", "burst_every", "burst_length"):
            if getattr(self, name) < 0:
                raise FaultConfigError(f"{name} must be >= 0")
        for name in ("products_max_obs", "products_max_rows", "retry_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise FaultConfigError(f"{name} must be >= 0")
        if self.burst_length > self.burst_every:
            raise FaultConfigError("burst_length must be <= burst_every")
        if self.content_encoding not in ("", *ENCODINGS):
            codings = ", ".join(ENCODINGS)
            raise FaultConfigError(f'content_encoding must be "" (none) or one of {codings}')

    def lies(self) -> bool:
        """Whether download answers misstate their bodies (any of the lying knobs set)."""
        return (
            self.short_body is not None
            or self.long_body is not None
            or self.framing != "length"
            or self.content_encoding != ""
            or self.wrong_length != 0
        )

    def active(self) -> bool:
        return self != FaultSettings()

    def body_faults(self) -> bool:
        """Whether download bodies are cut or stalled (resets, stalls)."""
        resets = self.reset_after is not None or self.reset_fraction is not None
        return resets or (self.stall_after is not None and self.stall_seconds > 0)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "latency_ms": (int, float),
    "bandwidth": (int,),
    "error_rate": (int, float),
    "error_status": (int,),
    "error_downloads_only": (bool,),
    "reset_after": (int,),
    "reset_fraction": (int, float),
    "stall_after": (int,),
    "stall_seconds": (int, float),
    "ignore_range": (bool,),
    "executing_polls": (int,),
    "scope": (str,),
    "max_faults": (int,),
    "short_body": (int,),
    "long_body": (int,),
    "framing": (str,),
    "content_encoding": (str,),
    "encoded_length": (bool,),
    "wrong_length": (int,),
    "api_latency_ms": (int, float),
    "product_ms_per_row": (int, float),
    "products_max_obs": (int,),
    "products_max_rows": (int,),
    "auth_401_only": (bool,),
    "no_etag": (str,),
    "no_length": (str,),
    "url_redirect": (bool,),
    "redirect_ignores_range": (bool,),
    "tess_ffi": (bool,),
    "burst_every": (int,),
    "burst_length": (int,),
    "retry_after": (int,),
    "crds_unavailable": (bool,),
}
_NULLABLE = {
    "reset_after",
    "reset_fraction",
    "stall_after",
    "max_faults",
    "short_body",
    "long_body",
    "products_max_obs",
    "products_max_rows",
    "retry_after",
}
# Body framings and content codings the lying knobs know.
FRAMINGS = ("length", "chunked", "close")
ENCODINGS = ("gzip",)


@dataclass(frozen=True)
class BodyPlan:
    """What to do to one response body (offsets in bytes of this body)."""

    reset_at: int | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0
    bandwidth: int = 0


@dataclass(frozen=True)
class Lie:
    """How one download answer misstates its body (the knobs of the same names)."""

    short_body: int = 0
    long_body: int = 0
    framing: str = "length"
    content_encoding: str = ""
    encoded_length: bool = True
    wrong_length: int = 0


@dataclass(frozen=True)
class RequestPlan:
    """The faults that apply to one request, decided when it arrives."""

    latency: float = 0.0
    error_status: int | None = None
    ignore_range: bool = False
    # Set for downloads under active body faults; see `body()`.
    faults: Faults | None = None
    bandwidth: int = 0
    # Seconds for a `Retry-After` header on an injected error.
    retry_after: int | None = None

    def error_headers(self) -> list[tuple[str, str]]:
        """Headers of the injected error answer (`Retry-After` when set)."""
        return [] if self.retry_after is None else [("Retry-After", str(self.retry_after))]

    def lie(self, method: str) -> Lie | None:
        """How this download answer lies, if it does; counted against `max_faults` here.

        A HEAD has no body to cut or lengthen: it lies only in its headers (encoding, length).
        """
        if self.faults is None:
            return None
        return self.faults.lie_plan(method)

    def body(self, size: int) -> BodyPlan | None:
        """The body faults for a body of `size` bytes that is about to be sent.

        Resets and stalls count against `max_faults` only here, when a body really goes out, so
        a HEAD before the GET does not use up a one-shot fault.
        """
        if self.faults is not None:
            return self.faults.body_plan(size, self.bandwidth)
        if self.bandwidth:
            return BodyPlan(bandwidth=self.bandwidth)
        return None


NO_FAULTS = RequestPlan()


@dataclass
class Faults:
    """Thread-safe holder of the current settings and the counters behind their decisions."""

    settings: FaultSettings = field(default_factory=FaultSettings)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _error_acc: float = 0.0
    _fired: int = 0
    _executing: dict[str, int] = field(default_factory=dict, repr=False)
    _burst_seen: int = 0
    _costed: dict[str, None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.settings.validate()
        self.active = self.settings.active()

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            out = dataclasses.asdict(self.settings)
            out["faults_injected"] = self._fired
        return out

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial JSON update; all-or-nothing, so a bad field changes nothing."""
        unknown = sorted(set(changes) - set(_FIELD_TYPES))
        if unknown:
            raise FaultConfigError(
                f"unknown fault setting(s) {', '.join(unknown)}; valid: {', '.join(_FIELD_TYPES)}"
            )
        for name, value in changes.items():
            if value is None and name in _NULLABLE:
                continue
            types = _FIELD_TYPES[name]
            # bool is an int subclass; don't let `true` pass as a byte count.
            if isinstance(value, bool) and bool not in types:
                raise FaultConfigError(f"{name} must be a number, not {value!r}")
            if not isinstance(value, types):
                raise FaultConfigError(f"{name} has the wrong type: {value!r}")
        with self._lock:
            new = dataclasses.replace(self.settings, **changes)
            new.validate()
            self.settings = new
            self._error_acc = 0.0
            self._fired = 0
            self._executing.clear()
            self._burst_seen = 0
            self._costed.clear()
            self.active = new.active()
        log.info("faults now %s", dataclasses.asdict(new))

    def clear(self) -> None:
        with self._lock:
            self.settings = FaultSettings()
            self._error_acc = 0.0
            self._fired = 0
            self._executing.clear()
            self._burst_seen = 0
            self._costed.clear()
            self.active = False

    def _budget_left(self) -> bool:
        limit = self.settings.max_faults
        return limit is None or self._fired < limit

    def plan(self, target: str, is_download: bool, is_api: bool = False) -> RequestPlan:
        """Decide the faults for one request. `target` is the data URI or the request path;
        `is_api`: an API call (Portal, auth, resolver), which `api_latency_ms` slows."""
        if not self.active:
            return NO_FAULTS
        with self._lock:
            s = self.settings
            if s.scope and s.scope not in target:
                return NO_FAULTS
            latency = (s.latency_ms + (s.api_latency_ms if is_api else 0.0)) / 1000.0
            eligible = is_download or not s.error_downloads_only
            if s.burst_every and eligible:
                place = self._burst_seen % s.burst_every
                self._burst_seen += 1
                if place >= s.burst_every - s.burst_length and self._budget_left():
                    self._fired += 1
                    return RequestPlan(latency=latency, error_status=503, retry_after=s.retry_after)
            if s.error_rate > 0 and eligible:
                self._error_acc += s.error_rate
                # A small tolerance so that e.g. 10 x 0.1 adds up to one error.
                if self._error_acc >= 1.0 - 1e-9 and self._budget_left():
                    self._error_acc -= 1.0
                    self._fired += 1
                    return RequestPlan(
                        latency=latency, error_status=s.error_status, retry_after=s.retry_after
                    )
            body_faults = s.body_faults() or s.lies()
            return RequestPlan(
                latency=latency,
                ignore_range=s.ignore_range and is_download,
                faults=self if is_download and body_faults else None,
                bandwidth=s.bandwidth,
            )

    def body_plan(self, size: int, bandwidth: int) -> BodyPlan | None:
        with self._lock:
            s = self.settings
            reset_at: int | None = None
            if s.reset_after is not None:
                # A body shorter than the reset point goes out whole.
                reset_at = s.reset_after if s.reset_after < size else None
            elif s.reset_fraction is not None:
                reset_at = int(size * s.reset_fraction)
            stall_at = s.stall_after if s.stall_seconds > 0 else None
            if stall_at is not None and stall_at >= size:
                stall_at = None
            if (reset_at is None and stall_at is None) or not self._budget_left():
                return BodyPlan(bandwidth=bandwidth) if bandwidth else None
            self._fired += 1
            return BodyPlan(reset_at, stall_at, s.stall_seconds, bandwidth)

    def lie_plan(self, method: str) -> Lie | None:
        with self._lock:
            s = self.settings
            if not s.lies() or not self._budget_left():
                return None
            head_only = method == "HEAD"
            lie = Lie(
                short_body=0 if head_only else s.short_body or 0,
                long_body=0 if head_only else s.long_body or 0,
                framing=s.framing,
                content_encoding=s.content_encoding,
                encoded_length=s.encoded_length,
                wrong_length=s.wrong_length,
            )
            if lie == Lie():
                return None
            self._fired += 1
            return lie

    def product_cost(self, key: str, rows: int) -> float:
        """Seconds of server time for a product list of `rows` rows: spent the first time the
        request `key` (its JSON without the page) is seen, as MAST keeps a result for its pages."""
        per_row = self.settings.product_ms_per_row
        if not self.active or per_row <= 0:
            return 0.0
        with self._lock:
            if key in self._costed:
                return 0.0
            self._costed[key] = None
            if len(self._costed) > 10000:
                self._costed.clear()
        return rows * per_row / 1000.0

    def executing_poll(self, key: str) -> bool:
        """True if this poll of the Portal request `key` should be answered EXECUTING."""
        if not self.active or self.settings.executing_polls <= 0:
            return False
        with self._lock:
            seen = self._executing.get(key, 0)
            if seen >= self.settings.executing_polls:
                return False
            self._executing[key] = seen + 1
            # Bound the memory a long-running simulator spends on finished requests.
            if len(self._executing) > 10000:
                self._executing.clear()
            return True
