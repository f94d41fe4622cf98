"""Who is asking: MAST API tokens, astroquery's `/whoami`, and the exclusive-access rule."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any

from mastfs.sim.faults import RequestPlan
from mastfs.sim.handler import Route

if TYPE_CHECKING:
    from mastfs.sim.content import SimFile
    from mastfs.sim.handler import BaseHandler, Request

EXCLUSIVE_ACCESS = "EXCLUSIVE_ACCESS"


def token(h: BaseHandler) -> str | None:
    """The request's token: `Authorization: token|Bearer ...`, else the `mast_token` cookie."""
    auth = h.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            return value.strip()
    cookie_header = h.headers.get("Cookie")
    if cookie_header:
        try:
            cookies = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = cookies.get("mast_token")
        if morsel is not None and morsel.value:
            return morsel.value
    return None


def access_denied(h: BaseHandler, f: SimFile) -> tuple[int, str] | None:
    """None if this request may read `f`, else (401|403, message).

    A user without rights gets 403, or 401 under `auth_401_only` (as MAST appears to answer
    every authorization failure); an expired token is refused like an unknown one.
    """
    if (f.dataRights or "").upper() != EXCLUSIVE_ACCESS:
        return None
    found = token(h)
    if found is None:
        return 401, f"{f.uri} is exclusive access: authentication required"
    if found in h.sim.expired_tokens:
        return 401, "expired MAST API token"
    user = h.sim.tokens.get(found)
    if user is None:
        return 401, "invalid or expired MAST API token"
    if str(f.proposal_id) not in user.proposals:
        status = 401 if h.sim.faults.settings.auth_401_only else 403
        return status, (
            f"{user.display_name} is not authorized for exclusive-access data of program "
            f"{f.proposal_id}"
        )
    return None


def whoami(h: BaseHandler, req: Request, plan: RequestPlan) -> None:
    found = token(h)
    known = h.sim.tokens.get(found) if found else None
    if known is None:
        info: dict[str, Any] = {
            "anon": True,
            "attrib": {},
            "eppn": None,
            "ezid": None,
            "scopes": [],
            "session": None,
            "token": None,
        }
    else:
        first, _, last = known.display_name.partition(" ")
        user = known.display_name.lower().replace(" ", ".").replace("..", ".")
        info = {
            "anon": False,
            "attrib": {
                "uuid": f"mastsim-{abs(hash(known.token)) % 10**12:012d}",
                "first_name": first,
                "last_name": last,
                "display_name": known.display_name,
                "internal": "0",
                "email": f"{user}@example.org",
                "Jwstcalengdataaccess": "false",
            },
            "eppn": f"{user}@example.org",
            "ezid": user,
            "scopes": ["mast:user:info", "mast:exclusive_access"],
            "session": None,
            "token": known.token,
        }
    h.send_json(200, info, plan=plan, stat="whoami")


ROUTES = (Route(("/whoami",), whoami, api=True),)
