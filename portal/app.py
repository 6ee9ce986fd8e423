"""The portal's app factory. No global state: each HTTP request carries its session in a cookie and
opens the inventory with the signed-in person's credentials."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allocation.errors import InventoryUnavailable, PermissionDenied, Unauthenticated
from allocation.settings import FactorySettings, InfrahubSettings
from portal import accounts, api, login, views
from portal.auth import (
    COOKIE,
    INSECURE_LOCAL,
    SESSION_SECONDS,
    Authenticator,
    InfrahubAccounts,
    LocalAccounts,
    Session,
    SessionCodec,
)
from portal.deps import HERE, BadRequestShape, Forbidden, NotSignedIn, templates

MAX_BODY_BYTES = 64 * 1024  # a request is five short fields; anything near this is not one


class NoAccounts(Exception):
    """The embedded backend has no account to sign in with."""


@dataclass(frozen=True)
class Security:
    """How people are recognised: by an authenticator, or (``authenticator=None``, 127.0.0.1 only,
    ``--insecure-local``) not at all: everyone is the local operator with every capability."""

    authenticator: Authenticator | None
    secret: str | None = None  # PORTAL_SECRET_KEY; None: a fresh key per process

    @classmethod
    def from_environment(cls, settings: FactorySettings) -> Security:
        secret = os.environ.get("PORTAL_SECRET_KEY") or None
        if settings.backend == "infrahub":
            return cls(InfrahubAccounts(InfrahubSettings().address), secret)
        path = accounts.path_from_env()
        if not accounts.load(path):
            raise NoAccounts(
                f"no account in {path}: create one with `factory accounts add NAME --role delivery` "
                "(roles: delivery, architect, viewer), or start with --insecure-local on 127.0.0.1"
            )
        return cls(LocalAccounts(path), secret)


def create_app(settings: FactorySettings | None = None, security: Security | None = None) -> FastAPI:
    settings = settings or FactorySettings()
    security = security or Security.from_environment(settings)
    app = FastAPI(
        title="Service factory portal",
        description="Request Dedicated Internet services and follow them to delivery. Sign in with "
        "`POST /api/session`; writes are JSON from this origin.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.insecure_local = security.authenticator is None
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(login.router)
    app.include_router(views.router)
    app.include_router(api.router)
    app.add_exception_handler(InventoryUnavailable, _unavailable)
    app.add_exception_handler(NotSignedIn, _not_signed_in)
    app.add_exception_handler(Unauthenticated, _not_signed_in)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(PermissionDenied, _forbidden)
    app.add_exception_handler(BadRequestShape, _bad_shape)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.middleware("http")(_Sessions(security))
    app.add_middleware(_LimitBody, max_bytes=MAX_BODY_BYTES)
    return app


class _Sessions:
    """Open the session cookie, keep the identity current (roles re-read, tokens refreshed), and seal
    the session back into the cookie when it changed."""

    def __init__(self, security: Security) -> None:
        self.security = security
        self.codec = SessionCodec(security.secret)

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        authenticator = self.security.authenticator
        found = self.codec.open(request.cookies.get(COOKIE))
        session = found or Session.anonymous()
        if authenticator is None:
            session = session.model_copy(update={"identity": INSECURE_LOCAL})
        elif session.identity is not None:
            try:
                current = await authenticator.current(session.identity)
            except InventoryUnavailable:
                current = session.identity  # Infrahub down: the request meets it and says so (503)
            session = session.model_copy(update={"identity": current})
        request.state.session = session
        request.state.authenticator = authenticator
        response = await call_next(request)
        final: Session = request.state.session
        if found is None or final != found:
            response.set_cookie(
                COOKIE,
                self.codec.seal(final),
                max_age=SESSION_SECONDS,
                httponly=True,
                secure=True,  # browsers accept it on http://127.0.0.1 and localhost too
                samesite="lax",
                path="/",
            )
        return response


class _LimitBody:
    """Refuse a body larger than ``max_bytes`` with 413 before any route reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"the request body is larger than {self.max_bytes} bytes"}, status_code=413
        )
        await response(scope, receive, send)


# ---------------------------------------------------------------------- refusals, page or JSON
def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _page(request: Request, title: str, message: str, status_code: int) -> Response:
    return templates.TemplateResponse(
        request, "error.html", {"title": title, "message": message}, status_code=status_code
    )


async def _unavailable(request: Request, error: Exception) -> Response:
    message = f"The source of truth cannot be reached: {error}. Nothing was recorded; try again later."
    if _is_api(request):
        return JSONResponse({"detail": message}, status_code=503)
    return _page(request, "Source of truth unavailable", message, 503)


async def _not_signed_in(request: Request, error: Exception) -> Response:
    if isinstance(error, Unauthenticated):  # Infrahub no longer accepts the session's token
        request.state.session = request.state.session.model_copy(update={"identity": None})
    if _is_api(request):
        return JSONResponse({"detail": "sign in first: POST /api/session"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = request.url_for("login_page").include_query_params(next=target)
    return RedirectResponse(str(url), status_code=303)


async def _forbidden(request: Request, error: Exception) -> Response:
    message = str(error)
    if _is_api(request):
        return JSONResponse({"detail": message}, status_code=403)
    return _page(request, "Not allowed", message, 403)


async def _bad_shape(request: Request, error: Exception) -> Response:
    code = error.status_code if isinstance(error, BadRequestShape) else 400
    if _is_api(request):
        return JSONResponse({"detail": str(error)}, status_code=code)
    return _page(request, "Request refused", str(error), code)


async def _invalid(request: Request, error: Exception) -> Response:
    details: list[Any] = list(error.errors()) if isinstance(error, RequestValidationError) else []
    if _is_api(request):
        return JSONResponse({"detail": [_short(d) for d in details]}, status_code=422)
    reasons = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}" for d in details)
    return _page(request, "Request refused", f"Nothing was changed: {reasons}"[:1000], 422)


def _short(detail: Any) -> Any:
    """A validation error without the refused input echoed back (it may be 10,000 characters)."""
    return {k: v for k, v in dict(detail).items() if k not in ("input", "ctx", "url")}
