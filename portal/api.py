"""A small JSON API for other systems (ticketing, CRM): the same requests and changes, without the
forms, answered by the same core."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from allocation import architect
from allocation.errors import (
    AllocationError,
    NoPortAvailable,
    PermissionDenied,
    PoolExhausted,
    ServiceConflict,
    UnknownService,
)
from allocation.intent import SERVICE_IDENTIFIER_PATTERN, Bandwidth, IpPackage, ServiceRequest
from allocation.model import MAIN, Service
from allocation.policy import TransitionName
from allocation.results import TransitionResult
from allocation.settings import FactorySettings
from allocation.steps import Changes
from portal import delivery
from portal.deps import Approver, Changer, InventoryDep, JsonWrite, Requester, SettingsDep, Viewer

router = APIRouter(
    prefix="/api",
    tags=["api"],
    responses={
        401: {"description": "Not signed in (POST /api/session)"},
        403: {"description": "This account may not do this, or a cross-origin write"},
        413: {"description": "Body larger than 64 KiB"},
        415: {"description": "A write that is not JSON"},
    },
)

MAX_PAGE = 1000

Identifier = Annotated[
    str, Path(pattern=SERVICE_IDENTIFIER_PATTERN, description="e.g. DIA-0042", examples=["DIA-0042"])
]

_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The request names something the inventory does not have (a site)"},
    409: {
        "description": "The inventory cannot serve it now, the identifier is taken, or the service is "
        "live with other values (change it with modify)"
    },
}


class RequestBody(ServiceRequest):
    """A request as the API takes it: a field the request does not have is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    def as_request(self) -> ServiceRequest:
        return ServiceRequest.model_validate(self.model_dump())


class ModifyBody(BaseModel):
    """What to change on an active service; what is left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    bandwidth: Bandwidth | None = Field(default=None, description="New bandwidth in Mbit/s")
    ip_package: IpPackage | None = Field(default=None, description="New IP package")


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    dependencies=[JsonWrite],
    responses={200: {"description": "The same request again: its current result"}, **_REFUSALS},
)
async def create_request(
    me: Requester, body: RequestBody, response: Response, inventory: InventoryDep, settings: SettingsDep
) -> TransitionResult:
    """Record a Dedicated Internet request and run its delivery up to the open proposed change.

    The identifier of a live service asked for with other values is refused (409), as by
    ``factory request``: a live service is changed with ``POST /api/services/{identifier}/modify``."""
    existed = await inventory.get_service(body.service_identifier, MAIN) is not None
    try:
        result = await delivery.submit(body.as_request(), inventory, settings, requested_by=me.name)
    except AllocationError as error:
        raise _refusal(error) from None
    if existed:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/services")
async def list_services(
    me: Viewer,
    response: Response,
    inventory: InventoryDep,
    status_: Annotated[str, Query(alias="status", max_length=32, description="e.g. active")] = "",
    site: Annotated[str, Query(max_length=32, description="e.g. par01")] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[Service]:
    """Services on main, ordered by identifier, ``limit`` of them from ``offset``; the number that
    match the filters is in the ``X-Total-Count`` header."""
    try:
        filters = delivery.filters(status_, site)
    except ValueError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(error)) from None
    total = await inventory.count_services(MAIN, status=filters.status, site=filters.site)
    response.headers["X-Total-Count"] = str(total)
    return await inventory.list_services(
        MAIN, status=filters.status, site=filters.site, offset=offset, limit=limit
    )


@router.post(
    "/services/{identifier}/modify",
    dependencies=[JsonWrite],
    responses={404: {"description": "No such service"}, **_REFUSALS},
)
async def modify_service(
    identifier: Identifier, me: Changer, body: ModifyBody, inventory: InventoryDep, settings: SettingsDep
) -> TransitionResult:
    """Change an active service's bandwidth or IP package: a reviewed change, run up to its open
    proposed change (outcome ``waiting``), or ``done`` at once when nothing would change."""
    if body.bandwidth is None and body.ip_package is None:
        raise HTTPException(422, detail="give bandwidth and/or ip_package")
    changes = Changes(bandwidth=body.bandwidth, ip_package=body.ip_package)
    return await _transition("modify", identifier, inventory, settings, changes)


@router.post(
    "/services/{identifier}/decommission",
    dependencies=[JsonWrite],
    responses={404: {"description": "No such service"}, **_REFUSALS},
)
async def decommission_service(
    identifier: Identifier, me: Changer, inventory: InventoryDep, settings: SettingsDep
) -> TransitionResult:
    """Retire an active service: its release runs up to the open proposed change."""
    return await _transition("decommission", identifier, inventory, settings)


@router.get("/services/{identifier}", responses={404: {"description": "No such service"}})
async def get_service(identifier: Identifier, me: Viewer, inventory: InventoryDep) -> Service:
    """One service on main, with who requested it."""
    service = await inventory.get_service(identifier, MAIN)
    if service is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no service {identifier!r}")
    return service


@router.post(
    "/services/{identifier}/approve",
    dependencies=[JsonWrite],
    responses={404: {"description": "No such service"}, 409: {"description": "Nothing waits for review"}},
)
async def approve_service(identifier: Identifier, me: Approver, inventory: InventoryDep) -> TransitionResult:
    """As the architect: merge the service's open proposed change and conclude its transition."""
    return await _decide(identifier, "merge", me.name, inventory)


@router.post(
    "/services/{identifier}/reject",
    dependencies=[JsonWrite],
    responses={404: {"description": "No such service"}, 409: {"description": "Nothing waits for review"}},
)
async def reject_service(identifier: Identifier, me: Approver, inventory: InventoryDep) -> TransitionResult:
    """As the architect: close the open proposed change; what its branch took is given back."""
    return await _decide(identifier, "close", me.name, inventory)


async def _decide(
    identifier: str, decision: architect.Decision, by: str, inventory: InventoryDep
) -> TransitionResult:
    try:
        return await architect.decide(identifier, decision, inventory, by=by)
    except (UnknownService, PermissionDenied) as error:
        raise _refusal(error) from None
    except AllocationError as error:  # nothing waits for review, or it was decided meanwhile
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None


async def _transition(
    name: TransitionName,
    identifier: str,
    inventory: InventoryDep,
    settings: FactorySettings,
    changes: Changes | None = None,
) -> TransitionResult:
    try:
        return await delivery.change(name, identifier, inventory, settings, changes)
    except AllocationError as error:
        raise _refusal(error) from None


def _refusal(error: AllocationError) -> HTTPException:
    if isinstance(error, PermissionDenied):
        return HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error))
    if isinstance(error, UnknownService):
        return HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error))
    if isinstance(error, ServiceConflict | NoPortAvailable | PoolExhausted):
        return HTTPException(status.HTTP_409_CONFLICT, detail=str(error))
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(error))
