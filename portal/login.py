"""Signing in and out: the login page for people, ``/api/session`` for other systems."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from portal.auth import Authenticator, Capability, Identity, LoginRefused, Session
from portal.deps import Forbidden, JsonWrite, form_guard, identity_of, session_of, templates

router = APIRouter()

Credential = Annotated[str, Form(max_length=256)]


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: Annotated[str, Query(max_length=512)] = "/") -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": _local(next), "error": None})


@router.post(
    "/login", response_class=HTMLResponse, dependencies=[Depends(form_guard("name", "password", "next"))]
)
async def login(
    request: Request, name: Credential = "", password: Credential = "", next: Credential = "/"
) -> Response:
    try:
        identity = await _authenticator(request).login(name.strip(), password)
    except LoginRefused as refused:
        context = {"next": _local(next), "error": str(refused), "name": name}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    _start(request, identity)
    return RedirectResponse(_local(next), status_code=303)


@router.post("/logout", dependencies=[Depends(form_guard())])
async def logout(request: Request) -> Response:
    await _end(request)
    return RedirectResponse(str(request.url_for("login_page")), status_code=303)


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=256)


class Me(BaseModel):
    name: str
    roles: list[str]
    capabilities: list[Capability]

    @classmethod
    def of(cls, identity: Identity) -> Me:
        return cls(name=identity.name, roles=list(identity.roles), capabilities=sorted(identity.capabilities))


@router.post(
    "/api/session",
    tags=["session"],
    dependencies=[JsonWrite],
    response_model=Me,
    responses={401: {"description": "Wrong name or password"}},
)
async def api_login(request: Request, body: Credentials) -> Me | JSONResponse:
    """Sign in: the answer sets the session cookie every later call sends back."""
    try:
        identity = await _authenticator(request).login(body.username.strip(), body.password)
    except LoginRefused as refused:
        return JSONResponse({"detail": str(refused)}, status_code=401)
    _start(request, identity)
    return Me.of(identity)


@router.get("/api/session", tags=["session"])
async def api_whoami(request: Request) -> Me:
    """Who the session belongs to and what they may do."""
    return Me.of(identity_of(request))


@router.delete("/api/session", tags=["session"], status_code=204)
async def api_logout(request: Request) -> Response:
    await _end(request)
    return Response(status_code=204)


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator | None = request.state.authenticator
    if authenticator is None:
        raise Forbidden("this portal runs with --insecure-local: there is nobody to sign in as")
    return authenticator


def _start(request: Request, identity: Identity) -> None:
    # A fresh CSRF token with every sign-in: a token seen before signing in is worth nothing after.
    request.state.session = Session.anonymous().model_copy(update={"identity": identity})


async def _end(request: Request) -> None:
    identity = session_of(request).identity
    authenticator: Authenticator | None = request.state.authenticator
    if identity is not None and authenticator is not None:
        await authenticator.logout(identity)
    request.state.session = Session.anonymous()


def _local(target: str) -> str:
    """Only a path of this portal: never another site after signing in."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
