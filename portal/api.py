"""A small JSON API for other systems (ticketing, CRM): the same requests, without the form."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from allocation.errors import AllocationError, NoPortAvailable, PoolExhausted, ServiceConflict
from allocation.intent import ServiceRequest
from allocation.model import MAIN, Service
from allocation.results import TransitionResult
from portal import delivery
from portal.deps import InventoryDep, SettingsDep

router = APIRouter(prefix="/api", tags=["api"])


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "The same request again: its current result"},
        400: {"description": "The request names something the inventory does not have (a site)"},
        409: {"description": "The inventory cannot serve it now, or the identifier is taken"},
    },
)
async def create_request(
    body: ServiceRequest, response: Response, inventory: InventoryDep, settings: SettingsDep
) -> TransitionResult:
    """Record a Dedicated Internet request and run its delivery up to the open proposed change."""
    existed = await inventory.get_service(body.service_identifier, MAIN) is not None
    try:
        result = await delivery.submit(body, inventory, settings)
    except (ServiceConflict, NoPortAvailable, PoolExhausted) as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
    except AllocationError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(error)) from None
    if existed:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/services")
async def list_services(inventory: InventoryDep) -> list[Service]:
    """Every service on main, with what is allocated to it."""
    return sorted(await inventory.list_services(MAIN), key=lambda s: s.service_identifier)
