"""What every route is given: who asks (and whether they may), the inventory opened with their
credentials, and the guards every form and API write passes through. No state between requests:
the session travels in its cookie (``portal/auth.py``)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from allocation.inventory import Inventory
from allocation.settings import FactorySettings, open_inventory
from portal.auth import Capability, Identity, Session

HERE = Path(__file__).resolve().parent


def _page_context(request: Request) -> dict[str, Any]:
    session: Session | None = getattr(request.state, "session", None)
    return {
        "me": session.identity if session else None,
        "csrf": session.csrf if session else "",
        "insecure_local": getattr(request.app.state, "insecure_local", False),
    }


templates = Jinja2Templates(directory=HERE / "templates", context_processors=[_page_context])


class NotSignedIn(Exception):
    """No valid session: pages send the person to sign in, the API answers 401."""


class Forbidden(Exception):
    """Signed in, but the account may not do this (403): the message says who and what."""


class BadRequestShape(Exception):
    """Refused before reading it: wrong content type (415), unknown fields, a forged form (403)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def session_of(request: Request) -> Session:
    session: Session = request.state.session
    return session


def identity_of(request: Request) -> Identity:
    identity = session_of(request).identity
    if identity is None:
        raise NotSignedIn()
    return identity


def require(capability: Capability) -> Callable[[Request], Coroutine[Any, Any, Identity]]:
    """A dependency: the signed-in identity, if it holds the capability."""

    async def check(request: Request) -> Identity:
        identity = identity_of(request)
        if not identity.may(capability):
            raise Forbidden(f"{identity.described} may not {_VERBS[capability]}")
        return identity

    return check


_VERBS = {
    Capability.VIEW: "see services",
    Capability.REQUEST: "request services",
    Capability.CHANGE: "change or decommission services",
    Capability.APPROVE: "merge or close proposed changes",
}


def settings_of(request: Request) -> FactorySettings:
    settings: FactorySettings = request.app.state.settings
    return settings


async def inventory_of(request: Request) -> AsyncIterator[Inventory]:
    """One inventory per HTTP request, opened with the signed-in person's credentials (on Infrahub,
    their token: Infrahub's permissions and activity log apply), closed when the response is done."""
    identity = identity_of(request)
    inventory = open_inventory(settings_of(request), access_token=identity.access_token)
    try:
        yield inventory
    finally:
        await inventory.close()


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def form_guard(*fields: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency for a form POST: a form content type, the session's CSRF token, no field the form
    does not have."""
    allowed = {"csrf_token", *fields}

    async def check(request: Request) -> None:
        if _content_type(request) not in FORM_TYPES:
            raise BadRequestShape(415, "send the form as application/x-www-form-urlencoded")
        form = await request.form()
        sent = form.get("csrf_token")
        expected = session_of(request).csrf
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise BadRequestShape(
                403, "the form is stale or was not sent from this portal: reload and try again"
            )
        unknown = sorted(set(form.keys()) - allowed)
        if unknown:
            raise BadRequestShape(422, f"unknown field(s): {', '.join(unknown)[:200]}")

    return check


async def json_write(request: Request) -> None:
    """Every API write: JSON only (a cross-site form cannot send it without the browser asking this
    portal first), and from this portal's own origin when a browser says where it comes from."""
    if _content_type(request) != "application/json":
        raise BadRequestShape(415, "send JSON: Content-Type: application/json")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise BadRequestShape(403, f"cross-origin write from {origin[:100]!r} refused")


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


InventoryDep = Annotated[Inventory, Depends(inventory_of)]
SettingsDep = Annotated[FactorySettings, Depends(settings_of)]
Viewer = Annotated[Identity, Depends(require(Capability.VIEW))]
Requester = Annotated[Identity, Depends(require(Capability.REQUEST))]
Changer = Annotated[Identity, Depends(require(Capability.CHANGE))]
Approver = Annotated[Identity, Depends(require(Capability.APPROVE))]
JsonWrite = Depends(json_write)
