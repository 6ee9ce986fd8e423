"""The portal's app factory. No global state: each HTTP request opens the inventory from settings."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from allocation.errors import InventoryUnavailable
from allocation.settings import FactorySettings
from portal import api, views
from portal.deps import HERE, templates


def create_app(settings: FactorySettings | None = None) -> FastAPI:
    app = FastAPI(
        title="Service factory portal",
        description="Request Dedicated Internet services and follow them to delivery.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings or FactorySettings()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(views.router)
    app.include_router(api.router)
    app.add_exception_handler(InventoryUnavailable, _unavailable)
    return app


async def _unavailable(request: Request, error: Exception) -> Response:
    message = f"The source of truth cannot be reached: {error}. Nothing was recorded; try again later."
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=503)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"title": "Source of truth unavailable", "message": message},
        status_code=503,
    )
